// Python bindings of the coordinate-wise kernels: mean, trimmed_mean, median.
// Arguments are checked here (never trust the caller with raw memory), the arrays are kept
// alive by references held in C++, and the GIL is released while the kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hierfed/dispatch.hpp"
#include "hierfed/sorting_network.hpp"
#include "hierfed/threads.hpp"

namespace py = pybind11;

namespace hierfed {
namespace {

constexpr std::size_t kUnit = 64;  // coordinates per work unit (a multiple of every lane count)

template <class T>
struct Batch {
    std::vector<py::object> keep_alive;
    std::vector<const T*> row_ptrs;
    std::vector<Segment<T>> segments;
    int n = 0;
};

template <class T>
py::array checked_array(py::handle obj, const std::string& what, std::size_t len, bool write) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(what + " must be a numpy array");
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!arr.dtype().is(py::dtype::of<T>()))
        throw py::type_error(what + " has the wrong dtype");
    if (arr.ndim() != 1 || static_cast<std::size_t>(arr.shape(0)) != len)
        throw py::value_error(what + " must be 1-D of length " + std::to_string(len));
    if (len > 1 && arr.strides(0) != static_cast<py::ssize_t>(sizeof(T)))
        throw py::value_error(what + " must be contiguous");
    if (write && !arr.writeable()) throw py::value_error(what + " must be writeable");
    return arr;
}

template <class T>
Batch<T> make_batch(const py::list& segments, const py::list& outs) {
    Batch<T> b;
    if (segments.size() != outs.size())
        throw py::value_error("segments and outs must have the same length");
    if (segments.empty()) throw py::value_error("need at least one segment");
    b.n = static_cast<int>(py::len(segments[0]));
    if (b.n < 1) throw py::value_error("need at least one update");
    for (std::size_t s = 0; s < segments.size(); ++s) {
        py::list rows = py::reinterpret_borrow<py::list>(segments[s]);
        if (!py::isinstance<py::list>(segments[s]) || static_cast<int>(rows.size()) != b.n)
            throw py::value_error("every segment must be a list of n arrays");
        auto out = checked_array<T>(outs[s], "outs[" + std::to_string(s) + "]",
                                    static_cast<std::size_t>(py::len(outs[s])), true);
        const std::size_t len = static_cast<std::size_t>(out.shape(0));
        for (int i = 0; i < b.n; ++i) {
            auto row = checked_array<T>(rows[i], "segments[" + std::to_string(s) + "][" +
                                                     std::to_string(i) + "]",
                                        len, false);
            b.row_ptrs.push_back(static_cast<const T*>(row.data()));
            b.keep_alive.push_back(row);
        }
        b.segments.push_back(Segment<T>{nullptr, static_cast<T*>(out.mutable_data()), len});
        b.keep_alive.push_back(out);
    }
    for (std::size_t s = 0; s < b.segments.size(); ++s)
        b.segments[s].rows = b.row_ptrs.data() + s * b.n;
    return b;
}

// Runs the kernel over all segments, threads splitting the concatenated coordinates.
template <class T>
bool run(const Batch<T>& b, const CoordParams& p, int n_threads) {
    std::vector<std::size_t> first_unit{0};
    for (auto& s : b.segments) first_unit.push_back(first_unit.back() + (s.len + kUnit - 1) / kUnit);
    const std::size_t units = first_unit.back();
    std::size_t elements = 0;
    for (auto& s : b.segments) elements += s.len * static_cast<std::size_t>(b.n);
    if (elements < (std::size_t{1} << 16)) n_threads = 1;  // not worth a thread
    std::vector<char> bad(std::max(1, n_threads), 0);
    parallel_for(units, n_threads, [&](std::size_t u0, std::size_t u1, int tid) {
        for (std::size_t s = 0; s < b.segments.size(); ++s) {
            std::size_t a = std::max(u0, first_unit[s]), e = std::min(u1, first_unit[s + 1]);
            if (a >= e) continue;
            const auto& seg = b.segments[s];
            std::size_t c0 = (a - first_unit[s]) * kUnit;
            std::size_t c1 = std::min(seg.len, (e - first_unit[s]) * kUnit);
            bool r;
            if constexpr (sizeof(T) == 4)
                r = kernels().coordinatewise_f32(seg, c0, c1, p);
            else
                r = kernels().coordinatewise_f64(seg, c0, c1, p);
            bad[tid] |= r;
        }
    });
    for (char c : bad)
        if (c) return true;
    return false;
}

std::vector<double> checked_weights(const py::object& weights, int n) {
    std::vector<double> w;
    if (weights.is_none()) return w;
    auto arr = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(weights);
    if (!arr || arr.ndim() != 1 || arr.shape(0) != n)
        throw py::value_error("weights must be a 1-D float64 array of length n");
    w.assign(arr.data(), arr.data() + n);
    return w;
}

template <class T>
bool coordinatewise(CoordOp op, const py::list& segments, const py::list& outs, int k,
                    const py::object& weights, int n_threads) {
    Batch<T> b = make_batch<T>(segments, outs);
    const int n = b.n;
    std::vector<double> w = checked_weights(weights, n);
    CoordParams p{op, n, k, w.empty() ? nullptr : w.data(), double(n), nullptr, 0};
    if (!w.empty()) {
        p.weight_sum = 0.0;
        for (double x : w) {
            if (!(x >= 0.0) || !std::isfinite(x)) throw py::value_error("weights must be finite and >= 0");
            p.weight_sum += x;
        }
        if (!(p.weight_sum > 0.0)) throw py::value_error("weights must not all be zero");
    }
    if (op == CoordOp::TrimmedMean && (k < 0 || 2 * k >= n))
        throw py::value_error("n_trim must satisfy 0 <= 2*n_trim < n");
    std::vector<std::int32_t> net;
    const int groups = w.empty() ? kernels().sort_group : 1;  // pre-sorted in registers
    if (op == CoordOp::Median)
        net = w.empty() ? sorting_network(n, (n - 1) / 2, n / 2 + 1, groups)
                        : sorting_network(n, 0, n);
    else if (op == CoordOp::TrimmedMean)
        net = sorting_network(n, k, n - k, groups);
    p.network = net.data();
    p.network_len = static_cast<int>(net.size() / 2);
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    py::gil_scoped_release release;
    return run<T>(b, p, n_threads);
}

bool dispatch(CoordOp op, const py::list& segments, const py::list& outs, int k,
              const py::object& weights, int n_threads) {
    if (outs.empty()) throw py::value_error("need at least one segment");
    py::array first = py::reinterpret_borrow<py::array>(outs[0]);
    if (!py::isinstance<py::array>(outs[0])) throw py::type_error("outs must hold numpy arrays");
    if (first.dtype().is(py::dtype::of<float>()))
        return coordinatewise<float>(op, segments, outs, k, weights, n_threads);
    if (first.dtype().is(py::dtype::of<double>()))
        return coordinatewise<double>(op, segments, outs, k, weights, n_threads);
    throw py::type_error("only float32 and float64 are supported");
}

}  // namespace

void bind_coordinatewise(py::module_& m) {
    m.def(
        "mean",
        [](const py::list& s, const py::list& o, const py::object& w, int t) {
            return dispatch(CoordOp::Mean, s, o, 0, w, t);
        },
        py::arg("segments"), py::arg("outs"), py::arg("weights"), py::arg("n_threads"),
        "Weighted mean per coordinate into outs; returns True if a non-finite value was seen.");
    m.def(
        "trimmed_mean",
        [](const py::list& s, const py::list& o, int k, const py::object& w, int t) {
            return dispatch(CoordOp::TrimmedMean, s, o, k, w, t);
        },
        py::arg("segments"), py::arg("outs"), py::arg("n_trim"), py::arg("weights"),
        py::arg("n_threads"),
        "Trimmed mean per coordinate into outs; returns True if a non-finite value was seen.");
    m.def(
        "median",
        [](const py::list& s, const py::list& o, const py::object& w, int t) {
            return dispatch(CoordOp::Median, s, o, 0, w, t);
        },
        py::arg("segments"), py::arg("outs"), py::arg("weights"), py::arg("n_threads"),
        "(Weighted) median per coordinate into outs; returns True if a non-finite value was seen.");
}

}  // namespace hierfed
