// Python bindings of the coordinate-wise kernels: mean, trimmed_mean, median,
// mean_around_median.
// Arguments are checked here (never trust the caller with raw memory), the arrays are kept
// alive by references held in C++, and the GIL is released while the kernels run.

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch.hpp"
#include "hierfed/dispatch.hpp"
#include "hierfed/sorting_network.hpp"

namespace py = pybind11;

namespace hierfed {
namespace {

// Runs the kernel over all segments, threads splitting the concatenated coordinates.
template <class T>
bool run(const Batch<T>& b, const CoordParams& p, int n_threads) {
    std::size_t elements = 0;
    for (const auto& s : b.segments) elements += s.len * static_cast<std::size_t>(b.n);
    return over_coordinates(b, elements, n_threads, [&](std::size_t s, std::size_t c0, std::size_t c1) {
        if constexpr (sizeof(T) == 4)
            return kernels().coordinatewise_f32(b.segments[s], c0, c1, p);
        else
            return kernels().coordinatewise_f64(b.segments[s], c0, c1, p);
    });
}

std::vector<double> checked_weights(const py::object& weights, int n) {
    std::vector<double> w;
    if (weights.is_none()) return w;
    auto arr = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(weights);
    if (!arr || arr.ndim() != 1 || arr.shape(0) != n || !aligned(arr))
        throw py::value_error("weights must be an aligned 1-D float64 array of length n");
    w.assign(arr.data(), arr.data() + n);
    return w;
}

template <class T>
bool coordinatewise(CoordOp op, const py::list& segments, const py::list& outs, int k,
                    const py::object& weights, int n_threads) {
    Batch<T> b = make_batch<T>(segments, &outs);
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
    if (op == CoordOp::AroundMedian && (k < 1 || k > n))
        throw py::value_error("n_keep must satisfy 1 <= n_keep <= n");
    // Equal weights give exactly the unweighted median (bit-equal sums on both sides).
    if (op == CoordOp::Median && !w.empty() &&
        std::all_of(w.begin(), w.end(), [&](double x) { return x == w[0]; })) {
        w.clear();
        p.weights = nullptr;
        p.weight_sum = double(n);
    }
    std::vector<std::int32_t> net, pairs;
    // Value sorts pre-sort aligned groups of rows in registers; the weighted median sorts
    // (value, row index) pairs, and so does the weighted trimmed mean's fallback.
    const int groups = kernels().sort_group;
    if (op == CoordOp::AroundMedian)  // the ranks the outward merge can reach
        net = sorting_network(n, std::max(0, (n - 1) / 2 - k + 1),
                              std::min(n, (n - 1) / 2 + 1 + k), groups);
    else if (op == CoordOp::Median && w.empty())
        net = sorting_network(n, (n - 1) / 2, n / 2 + 1, groups);
    else if (op == CoordOp::Median)  // the value network first, the pairs' where it is unsure
        net = sorting_network(n, 0, n, groups);
    else if (op == CoordOp::TrimmedMean)
        net = sorting_network(n, k, n - k, groups);
    if (!w.empty() && op != CoordOp::AroundMedian)
        pairs = op == CoordOp::Median ? sorting_network(n, 0, n) : sorting_network(n, k, n - k);
    p.network = net.data();
    p.network_len = static_cast<int>(net.size() / 2);
    p.pair_network = pairs.data();
    p.pair_network_len = static_cast<int>(pairs.size() / 2);
    p.value_network_first = op == CoordOp::Median && !w.empty();
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
    m.def(
        "mean_around_median",
        [](const py::list& s, const py::list& o, int k, const py::object& w, int t) {
            return dispatch(CoordOp::AroundMedian, s, o, k, w, t);
        },
        py::arg("segments"), py::arg("outs"), py::arg("n_keep"), py::arg("weights"),
        py::arg("n_threads"),
        "Per coordinate the (weighted) mean of the n_keep values closest to the median, ties "
        "to the lower index; returns True if a non-finite value was seen.");
}

}  // namespace hierfed
