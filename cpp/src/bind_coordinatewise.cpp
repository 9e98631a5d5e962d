// Python bindings of the coordinate-wise kernels: mean, trimmed_mean, median,
// mean_around_median.
// Arguments are checked here (never trust the caller with raw memory), the arrays are kept
// alive by references held in C++, and the GIL is released while the kernels run.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch.hpp"
#include "hierfed/dispatch.hpp"
#include "hierfed/sorting_network.hpp"
#include "hierfed/wmedian_window.hpp"

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

// The kernel of `op` over the batch with validated weights `w` (empty: unweighted), the
// rule's networks built here; the GIL released while it runs.
template <class T>
bool run_rule(CoordOp op, const Batch<T>& b, int k, std::vector<double> w, int n_threads) {
    const int n = b.n;
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
    else if (op == CoordOp::Median) {  // the value network first, the pairs' where it is unsure
        const WeightedMedianWindow win = weighted_median_window(w.data(), n, p.weight_sum);
        p.wm_low = win.low;
        p.wm_high = win.high;
        net = sorting_network(n, win.low, win.high + 1, groups);
    }
    else if (op == CoordOp::TrimmedMean)
        net = sorting_network(n, k, n - k, groups);
    if (!w.empty() && op != CoordOp::AroundMedian)
        pairs = op == CoordOp::Median ? sorting_network(n, 0, n) : sorting_network(n, k, n - k);
    p.network = net.data();
    p.network_len = static_cast<int>(net.size() / 2);
    int rows = 1;
    while (rows < n) rows *= 2;
    // net.size() / 2 comparators, more than 0.55 of the merge's (measured: at n = 100 the
    // median's pruned network, 0.51 of them, was faster flat; at 200, 0.57, merged it was on
    // par with 2 threads and 15% faster with 1)
    if (rows >= 2 * groups && 10 * long(net.size()) > 11 * merge_tile_comparators(n, groups)) {
        p.merge_tile = true;
        p.merge_rows = rows;
    }
    p.pair_network = pairs.data();
    p.pair_network_len = static_cast<int>(pairs.size() / 2);
    p.value_network_first = op == CoordOp::Median && !w.empty();
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    py::gil_scoped_release release;
    return run<T>(b, p, n_threads);
}

template <class T>
bool coordinatewise(CoordOp op, const py::list& segments, const py::list& outs, int k,
                    const py::object& weights, int n_threads) {
    Batch<T> b = make_batch<T>(segments, &outs);
    return run_rule<T>(op, b, k, checked_weights(weights, b.n), n_threads);
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

// ---- one call for a plain matrix ------------------------------------------------------------

// The weights of a one-call entry, as hierfed._inputs.as_weights gives them: None, or an exact
// float64 1-D ndarray of n entries (C-contiguous, aligned), finite, >= 0, not all zero, scaled
// by a power of two (exact) so the largest lies in [0.5, 1). False: Python checks them.
bool plain_weights(py::handle weights, int n, std::vector<double>& out) {
    if (weights.is_none()) return true;
    if (!plain_array(weights, 1)) return false;
    auto a = py::reinterpret_borrow<py::array>(weights);
    if (!a.dtype().is(py::dtype::of<double>()) || a.shape(0) != n) return false;
    const double* w = static_cast<const double*>(a.data());
    double top = 0.0;
    for (int i = 0; i < n; ++i) {
        if (!(w[i] >= 0.0) || !std::isfinite(w[i])) return false;
        top = std::max(top, w[i]);
    }
    if (!(top > 0.0)) return false;
    int e = 0;
    std::frexp(top, &e);
    out.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = std::ldexp(w[i], -e);
    return true;
}

template <class T>
py::object rule_matrix_typed(CoordOp op, const py::array& x, int k, std::vector<double> w,
                             int n_threads) {
    const int n = static_cast<int>(x.shape(0));
    const auto d = static_cast<std::size_t>(x.shape(1));
    py::array_t<T> out(static_cast<py::ssize_t>(d));
    T* o = out.mutable_data();
    Batch<T> b;
    b.n = n;
    const T* in = static_cast<const T*>(x.data());
    for (int i = 0; i < n; ++i) b.row_ptrs.push_back(in + static_cast<std::size_t>(i) * d);
    b.segments.push_back(Segment<T>{b.row_ptrs.data(), o, d});
    if (run_rule<T>(op, b, k, std::move(w), n_threads)) return py::none();  // NaN/inf input
    // A non-finite answer from finite input: a float64 sum that overflowed, or 0/0 where every
    // kept weight is zero; the general way reports either.
    for (std::size_t j = 0; j < d; ++j)
        if (!std::isfinite(o[j])) return py::none();
    return std::move(out);
}

// The quick way of hierfed.mean, trimmed_mean and median: for an exact numpy ndarray, 2-D,
// float32 or float64, C-contiguous and aligned, n, d >= 1, with plain weights (or None), the
// answer of the general way, bit for bit; None for anything else (other inputs, weights to
// check, NaN/inf, an overflow or zero kept weight), and the caller takes the general way,
// which checks and reports. One Python call: the general way's input views, weight checks
// and output wrapping cost more than the kernel at d = 1e3.
py::object rule_matrix(CoordOp op, py::handle x, int k, py::handle weights, int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    if (!plain_array(x, 2)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(x);
    const int n = static_cast<int>(a.shape(0));
    if (op == CoordOp::TrimmedMean && (k < 0 || 2 * k >= n)) return py::none();
    std::vector<double> w;
    if (!plain_weights(weights, n, w)) return py::none();
    if (a.dtype().is(py::dtype::of<float>()))
        return rule_matrix_typed<float>(op, a, k, std::move(w), n_threads);
    if (a.dtype().is(py::dtype::of<double>()))
        return rule_matrix_typed<double>(op, a, k, std::move(w), n_threads);
    return py::none();
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
        "mean_matrix",
        [](py::handle x, py::handle w, int t) { return rule_matrix(CoordOp::Mean, x, 0, w, t); },
        py::arg("x"), py::arg("weights"), py::arg("n_threads"),
        "mean of a plain (n, d) matrix in one call, or None for the general way.");
    m.def(
        "trimmed_mean_matrix",
        [](py::handle x, int k, py::handle w, int t) {
            return rule_matrix(CoordOp::TrimmedMean, x, k, w, t);
        },
        py::arg("x"), py::arg("n_trim"), py::arg("weights"), py::arg("n_threads"),
        "trimmed_mean of a plain (n, d) matrix in one call, or None for the general way.");
    m.def(
        "median_matrix",
        [](py::handle x, py::handle w, int t) { return rule_matrix(CoordOp::Median, x, 0, w, t); },
        py::arg("x"), py::arg("weights"), py::arg("n_threads"),
        "median of a plain (n, d) matrix in one call, or None for the general way.");
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
