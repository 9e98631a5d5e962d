// Python bindings of the mixing kernels: m weighted means of the same n rows in one pass, and
// the bucket means of a permutation of the rows (each row read once).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "batch.hpp"
#include "hierfed/dispatch.hpp"

namespace hierfed {
namespace {

// The outputs' row pointers: outs[s] a writeable C-contiguous (m, len_s) array per segment.
template <class T>
std::vector<T*> output_rows(const Batch<T>& b, const py::list& outs, int m, std::vector<py::object>& keep) {
    if (outs.size() != b.segments.size()) throw py::value_error("need one output per segment");
    std::vector<T*> out_ptrs;
    for (std::size_t s = 0; s < b.segments.size(); ++s) {
        if (!py::isinstance<py::array>(outs[s])) throw py::type_error("outs must hold numpy arrays");
        auto o = py::reinterpret_borrow<py::array>(outs[s]);
        if (!o.dtype().is(py::dtype::of<T>())) throw py::type_error("outs must have the rows' dtype");
        if (o.ndim() != 2 || o.shape(0) != m ||
            static_cast<std::size_t>(o.shape(1)) != b.segments[s].len ||
            !(o.flags() & py::array::c_style) || !o.writeable() || !aligned(o))
            throw py::value_error("outs[" + std::to_string(s) + "] must be a writeable C-contiguous (m, len) array");
        T* base = static_cast<T*>(o.mutable_data());
        for (int q = 0; q < m; ++q) out_ptrs.push_back(base + std::size_t(q) * b.segments[s].len);
        keep.push_back(o);
    }
    return out_ptrs;
}

template <class T>
bool mix(const py::list& segments, py::array weights, const py::list& outs, int n_threads) {
    Batch<T> b = make_batch<T>(segments, nullptr);
    const int n = b.n;
    if (!weights.dtype().is(py::dtype::of<double>())) throw py::type_error("weights must be float64");
    if (weights.ndim() != 2 || weights.shape(1) != n || weights.shape(0) < 1 ||
        !(weights.flags() & py::array::c_style) || !aligned(weights))
        throw py::value_error("weights must be a C-contiguous (m, n) array, n = " + std::to_string(n));
    const int m = static_cast<int>(weights.shape(0));
    const double* w = static_cast<const double*>(weights.data());
    std::vector<double> wsum(m, 0.0);
    for (int o = 0; o < m; ++o) {
        for (int i = 0; i < n; ++i) {
            const double x = w[std::size_t(o) * n + i];
            if (!(x >= 0.0) || !std::isfinite(x)) throw py::value_error("weights must be finite and >= 0");
            wsum[o] = wsum[o] + x;
        }
        if (!(wsum[o] > 0.0)) throw py::value_error("every row of weights needs a positive weight");
    }
    std::vector<py::object> keep;
    std::vector<T*> out_ptrs = output_rows<T>(b, outs, m, keep);
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    std::size_t elements = 0;
    for (const auto& s : b.segments) elements += s.len * std::size_t(n) * std::size_t(m);
    py::gil_scoped_release release;
    return over_coordinates(b, elements, n_threads, [&](std::size_t s, std::size_t c0, std::size_t c1) {
        const auto& seg = b.segments[s];
        T* const* dst = out_ptrs.data() + s * std::size_t(m);
        if constexpr (sizeof(T) == 4)
            return kernels().mix_f32(seg.rows, n, w, wsum.data(), m, dst, c0, c1);
        else
            return kernels().mix_f64(seg.rows, n, w, wsum.data(), m, dst, c0, c1);
    });
}

template <class T>
bool buckets(const py::list& segments, py::array order, int s, const py::list& outs, int n_threads) {
    Batch<T> b = make_batch<T>(segments, nullptr);
    const int n = b.n;
    if (!order.dtype().is(py::dtype::of<std::int64_t>())) throw py::type_error("order must be int64");
    if (order.ndim() != 1 || order.shape(0) != n || !(order.flags() & py::array::c_style) || !aligned(order))
        throw py::value_error("order must be a C-contiguous 1-D array of length n = " + std::to_string(n));
    const std::int64_t* ord = static_cast<const std::int64_t*>(order.data());
    std::vector<char> seen(n, 0);
    for (int i = 0; i < n; ++i) {
        if (ord[i] < 0 || ord[i] >= n || seen[ord[i]]) throw py::value_error("order must be a permutation of 0 .. n-1");
        seen[ord[i]] = 1;
    }
    if (s < 1) throw py::value_error("s must be >= 1");
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    const int m = (n + s - 1) / s;
    std::vector<py::object> keep;
    std::vector<T*> out_ptrs = output_rows<T>(b, outs, m, keep);
    std::size_t elements = 0;
    for (const auto& seg : b.segments) elements += seg.len * std::size_t(n);
    py::gil_scoped_release release;
    return over_coordinates(b, elements, n_threads, [&](std::size_t g, std::size_t c0, std::size_t c1) {
        T* const* dst = out_ptrs.data() + g * std::size_t(m);
        if constexpr (sizeof(T) == 4)
            return kernels().bucket_f32(b.segments[g].rows, ord, n, s, dst, c0, c1);
        else
            return kernels().bucket_f64(b.segments[g].rows, ord, n, s, dst, c0, c1);
    });
}

// The quick way of hierfed.bucketing (as clip_matrix in bind_privacy.cpp): the (ceil(n / s), d)
// bucket means of a plain float32/float64 (n, d) matrix for the permutation `perm` (int64,
// drawn by the caller), each bucket's rows in ascending index as Python's bucket_order puts
// them; None when x is not plain or a sum is not finite (the caller's general way, given the
// same permutation, then raises or answers).
py::object bucket_matrix(py::handle x, const py::array& perm, int s, int n_threads) {
    if (s < 1) throw py::value_error("s must be >= 1");
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    if (!plain_array(x, 2)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(x);
    const bool f32 = a.dtype().is(py::dtype::of<float>());
    if (!f32 && !a.dtype().is(py::dtype::of<double>())) return py::none();
    const auto n = static_cast<std::size_t>(a.shape(0));
    const auto d = static_cast<std::size_t>(a.shape(1));
    if (!perm.dtype().is(py::dtype::of<std::int64_t>()) || perm.ndim() != 1 ||
        static_cast<std::size_t>(perm.shape(0)) != n || !(perm.flags() & py::array::c_style) ||
        !aligned(perm))
        throw py::value_error("perm must be a C-contiguous 1-D int64 array of length n");
    const auto* p = static_cast<const std::int64_t*>(perm.data());
    std::vector<std::int64_t> order(p, p + n);
    std::vector<char> seen(n, 0);
    for (std::int64_t i : order) {
        if (i < 0 || static_cast<std::size_t>(i) >= n || seen[i])
            throw py::value_error("perm must be a permutation of 0 .. n-1");
        seen[i] = 1;
    }
    for (std::size_t b = 0; b < n; b += std::size_t(s))
        std::sort(order.begin() + std::ptrdiff_t(b),
                  order.begin() + std::ptrdiff_t(std::min(n, b + std::size_t(s))));
    const std::size_t m = (n + s - 1) / std::size_t(s);
    py::array out = f32 ? py::array(py::array_t<float>({m, d})) : py::array(py::array_t<double>({m, d}));
    auto run = [&](auto zero) {
        using T = decltype(zero);
        const T* in = static_cast<const T*>(a.data());
        T* o = static_cast<T*>(out.mutable_data());
        std::vector<const T*> rows(n);
        std::vector<T*> dst(m);
        for (std::size_t i = 0; i < n; ++i) rows[i] = in + i * d;
        for (std::size_t q = 0; q < m; ++q) dst[q] = o + q * d;
        Batch<T> b;
        b.n = static_cast<int>(n);
        b.segments.push_back(Segment<T>{rows.data(), nullptr, d});
        py::gil_scoped_release release;
        return over_coordinates(b, n * d, n_threads, [&](std::size_t, std::size_t c0, std::size_t c1) {
            if constexpr (sizeof(T) == 4)
                return kernels().bucket_f32(rows.data(), order.data(), b.n, s, dst.data(), c0, c1);
            else
                return kernels().bucket_f64(rows.data(), order.data(), b.n, s, dst.data(), c0, c1);
        });
    };
    const bool bad = f32 ? run(float{}) : run(double{});
    if (bad) return py::none();
    return out;
}

}  // namespace

void bind_mixing(py::module_& m) {
    m.def(
        "mix_rows",
        [](const py::list& segments, const py::array& weights, const py::list& outs,
           int n_threads) {
            py::dtype dt = first_row_dtype(segments);
            if (dt.is(py::dtype::of<float>())) return mix<float>(segments, weights, outs, n_threads);
            if (dt.is(py::dtype::of<double>())) return mix<double>(segments, weights, outs, n_threads);
            throw py::type_error("only float32 and float64 are supported");
        },
        py::arg("segments"), py::arg("weights"), py::arg("outs"), py::arg("n_threads"),
        "outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i] per segment; returns True "
        "if a non-finite value was seen.");
    m.def(
        "bucket_means",
        [](const py::list& segments, const py::array& order, int s, const py::list& outs,
           int n_threads) {
            py::dtype dt = first_row_dtype(segments);
            if (dt.is(py::dtype::of<float>())) return buckets<float>(segments, order, s, outs, n_threads);
            if (dt.is(py::dtype::of<double>())) return buckets<double>(segments, order, s, outs, n_threads);
            throw py::type_error("only float32 and float64 are supported");
        },
        py::arg("segments"), py::arg("order"), py::arg("s"), py::arg("outs"), py::arg("n_threads"),
        "outs[g][b] = the mean of rows order[b*s : b*s + s] of segment g (float64 sums in that "
        "order); returns True if a sum is non-finite.");
    m.def("bucket_matrix", &bucket_matrix, py::arg("x"), py::arg("perm"), py::arg("s"),
          py::arg("n_threads"),
          "Bucket means of a plain (n, d) matrix for a permutation in one call, or None.");
}

}  // namespace hierfed
