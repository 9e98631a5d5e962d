// Python bindings of the distance kernels: pairwise_sq_distances and sq_distances_to.
// Checked arguments, arrays kept alive, the GIL released while threads run the kernels.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "batch.hpp"
#include "hierfed/dispatch.hpp"
#include "hierfed/threads.hpp"

namespace hierfed {
namespace {

constexpr std::size_t kRunLength = 128;  // the recipe's float32 run: chunks are multiples
constexpr int kRowBlock = 4;  // row groups start at multiples of it (dist::kRowBlock)

void check_threads(int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
}

double* checked_matrix(py::array out, int n) {
    if (!out.dtype().is(py::dtype::of<double>())) throw py::type_error("out must be float64");
    if (out.ndim() != 2 || out.shape(0) != n ||
        out.shape(1) != n || !(out.flags() & py::array::c_style) || !out.writeable() ||
        !aligned(out))
        throw py::value_error("out must be a writeable C-contiguous (n, n) float64 array, n = " +
                              std::to_string(n));
    return static_cast<double*>(out.mutable_data());
}

// Row groups [bounds[g], bounds[g+1]) at multiples of kRowBlock, about equal in pairs.
std::vector<int> row_groups(int n, std::size_t groups) {
    const std::size_t blocks = (std::size_t(n) + kRowBlock - 1) / kRowBlock;
    groups = std::max<std::size_t>(1, std::min(groups, blocks));
    const std::size_t total = blocks * (blocks + 1) / 2;  // block b pairs with blocks - b
    std::vector<int> bounds{0};
    std::size_t done = 0;
    for (std::size_t b = 0; b < blocks; ++b) {
        done += blocks - b;
        if (done * groups >= total * bounds.size() && bounds.size() < groups &&
            (b + 1) * kRowBlock < std::size_t(n))
            bounds.push_back(int((b + 1) * kRowBlock));
    }
    bounds.push_back(n);
    return bounds;
}

// Chunks of every segment in order; unit u holds chunks [u*K/U, (u+1)*K/U). Units sum their
// chunks in order, each into its own packed upper triangle; the units' triangles are then
// added in order. Work items are (unit, group of rows): each pair belongs to one item, which
// adds its chunk values in order, so however the items are shared among threads (more groups
// when there are fewer units than threads) nothing depends on the number of threads.
template <class T>
void pairwise(const py::list& segments, const py::array& out, std::size_t chunk, int n_units,
              int n_threads) {
    Batch<T> b = make_batch<T>(segments, nullptr);
    const int n = b.n;
    double* d = checked_matrix(out, n);
    if (chunk < kRunLength || chunk % kRunLength)
        throw py::value_error("chunk must be a positive multiple of 128");
    if (n_units < 1) throw py::value_error("n_units must be >= 1");
    check_threads(n_threads);
    // Chunk c is chunk c - first[s] of the segment s with first[s] <= c < first[s + 1]: no
    // list of chunks (at n = 10, d = 5e6 it would be 5,000 entries, 120 KB).
    std::vector<std::size_t> first{0};
    std::size_t elements = 0;
    for (const auto& seg : b.segments) {
        first.push_back(first.back() + (seg.len + chunk - 1) / chunk);
        elements += seg.len * std::size_t(n);
    }
    const std::size_t k = first.back();
    const std::size_t units = std::min<std::size_t>(std::size_t(n_units), k);
    const std::size_t pairs = std::size_t(n) * std::size_t(n - 1) / 2;
    std::vector<double> partial(units * pairs, 0.0);
    if (elements < (std::size_t{1} << 16)) n_threads = 1;
    const std::vector<int> bounds =
        row_groups(n, units ? (4 * std::size_t(n_threads) + units - 1) / units : 1);
    const std::size_t groups = bounds.size() - 1;
    {
        py::gil_scoped_release release;
        parallel_for(units * groups, n_threads, [&](std::size_t w0, std::size_t w1, int) {
            for (std::size_t w = w0; w < w1; ++w) {
                const std::size_t u = w / groups, g = w % groups;
                std::size_t s = 0;
                for (std::size_t c = u * k / units; c < (u + 1) * k / units; ++c) {
                    while (c >= first[s + 1]) ++s;
                    const Segment<T>& seg = b.segments[s];
                    const std::size_t c0 = (c - first[s]) * chunk;
                    const std::size_t c1 = std::min(seg.len, c0 + chunk);
                    if constexpr (sizeof(T) == 4)
                        kernels().pairwise_chunk_f32(seg.rows, n, c0, c1, bounds[g],
                                                     bounds[g + 1], partial.data() + u * pairs);
                    else
                        kernels().pairwise_chunk_f64(seg.rows, n, c0, c1, bounds[g],
                                                     bounds[g + 1], partial.data() + u * pairs);
                }
            }
        });
        std::size_t p = 0;
        for (int i = 0; i < n; ++i) {
            d[std::size_t(i) * n + i] = 0.0;
            for (int j = i + 1; j < n; ++j, ++p) {
                double sum = units ? partial[p] : 0.0;
                for (std::size_t u = 1; u < units; ++u) sum = sum + partial[u * pairs + p];
                d[std::size_t(i) * n + j] = sum;
                d[std::size_t(j) * n + i] = sum;
            }
        }
    }
}

// Each row's distance is computed by one thread, segments in order: no thread dependence.
template <class T>
void to_point(const py::list& segments, const py::list& point, py::array out,
              int n_threads) {
    Batch<T> b = make_batch<T>(segments, &point, false);
    const int n = b.n;
    if (!out.dtype().is(py::dtype::of<double>())) throw py::type_error("out must be float64");
    if (out.ndim() != 1 || out.shape(0) != n ||
        !(out.flags() & py::array::c_style) || !out.writeable() || !aligned(out))
        throw py::value_error("out must be a writeable aligned 1-D float64 array of length n");
    check_threads(n_threads);
    double* d = static_cast<double*>(out.mutable_data());
    std::size_t elements = 0;
    for (const auto& seg : b.segments) elements += seg.len * std::size_t(n);
    if (elements < (std::size_t{1} << 16)) n_threads = 1;
    py::gil_scoped_release release;
    parallel_for(std::size_t(n), n_threads, [&](std::size_t i0, std::size_t i1, int) {
        for (std::size_t i = i0; i < i1; ++i) {
            double total = 0.0;
            for (const auto& seg : b.segments) {
                if constexpr (sizeof(T) == 4)
                    total = total + kernels().sq_distance_to_f32(seg.rows[i], seg.out, seg.len);
                else
                    total = total + kernels().sq_distance_to_f64(seg.rows[i], seg.out, seg.len);
            }
            d[i] = total;
        }
    });
}

// ---- MoNNA in one call ---------------------------------------------------------------------

// MoNNA of an (n, d) matrix: the mean of the n - f rows nearest `trusted` (stable: ties to the
// lower index), summed in index order by the coordinate-wise mean kernel; None when a
// distance is not finite or a float64 mean overflows (Python's general way raises or goes on).
template <class T>
py::object monna_matrix_typed(const py::array& x, std::size_t f, const py::array& trusted,
                              int n_threads) {
    const auto n = static_cast<std::size_t>(x.shape(0));
    const auto d = static_cast<std::size_t>(x.shape(1));
    const T* in = static_cast<const T*>(x.data());
    const T* point = static_cast<const T*>(trusted.data());
    std::vector<double> dist(n);
    py::array_t<T> out(static_cast<py::ssize_t>(d));
    std::vector<const T*> rows;
    bool nonfinite = false;
    {
        py::gil_scoped_release release;
        const int t = n * d < (std::size_t{1} << 16) ? 1 : n_threads;
        parallel_for(n, t, [&](std::size_t i0, std::size_t i1, int) {
            for (std::size_t i = i0; i < i1; ++i) {
                if constexpr (sizeof(T) == 4)
                    dist[i] = 0.0 + kernels().sq_distance_to_f32(in + i * d, point, d);
                else
                    dist[i] = 0.0 + kernels().sq_distance_to_f64(in + i * d, point, d);
            }
        });
        nonfinite = !std::all_of(dist.begin(), dist.end(), [](double v) { return std::isfinite(v); });
        if (!nonfinite) {
            std::vector<std::size_t> order(n);
            for (std::size_t i = 0; i < n; ++i) order[i] = i;
            std::stable_sort(order.begin(), order.end(),
                             [&](std::size_t a, std::size_t b) { return dist[a] < dist[b]; });
            const std::size_t m = n - f;
            std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(m));
            for (std::size_t j = 0; j < m; ++j) rows.push_back(in + order[j] * d);
            Batch<T> b;
            b.n = static_cast<int>(m);
            b.segments.push_back(Segment<T>{rows.data(), out.mutable_data(), d});
            const CoordParams prm{CoordOp::Mean, b.n, 0, nullptr, double(m), nullptr, 0};
            over_coordinates(b, m * d, n_threads, [&](std::size_t s, std::size_t c0, std::size_t c1) {
                if constexpr (sizeof(T) == 4)
                    return kernels().coordinatewise_f32(b.segments[s], c0, c1, prm);
                else
                    return kernels().coordinatewise_f64(b.segments[s], c0, c1, prm);
            });
            const T* o = out.data();
            if constexpr (sizeof(T) == 8)  // float64 sums can overflow near 1.8e308
                nonfinite = !std::all_of(o, o + d, [](double v) { return std::isfinite(v); });
        }
    }
    if (nonfinite) return py::none();
    return std::move(out);
}

// The quick way of hierfed.monna (as clip_matrix in bind_privacy.cpp): a plain float32/float64
// (n, d) matrix, an exact int 0 <= f < n and a plain 1-D `trusted` of length d and the same
// dtype (no weights), or None.
py::object monna_matrix(py::handle x, py::handle f, py::handle trusted, int n_threads) {
    check_threads(n_threads);
    if (!plain_array(x, 2) || !plain_array(trusted, 1)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(x);
    auto p = py::reinterpret_borrow<py::array>(trusted);
    const long long fv = plain_count(f, a.shape(0));
    if (fv < 0 || p.shape(0) != a.shape(1) || !p.dtype().is(a.dtype())) return py::none();
    if (a.dtype().is(py::dtype::of<float>()))
        return monna_matrix_typed<float>(a, static_cast<std::size_t>(fv), p, n_threads);
    if (a.dtype().is(py::dtype::of<double>()))
        return monna_matrix_typed<double>(a, static_cast<std::size_t>(fv), p, n_threads);
    return py::none();
}

}  // namespace

void bind_distances(py::module_& m) {
    m.def(
        "pairwise_sq_distances",
        [](const py::list& segments, const py::array& out, std::size_t chunk, int n_units,
           int n_threads) {
            py::dtype dt = first_row_dtype(segments);
            if (dt.is(py::dtype::of<float>()))
                pairwise<float>(segments, out, chunk, n_units, n_threads);
            else if (dt.is(py::dtype::of<double>()))
                pairwise<double>(segments, out, chunk, n_units, n_threads);
            else
                throw py::type_error("only float32 and float64 are supported");
        },
        py::arg("segments"), py::arg("out"), py::arg("chunk"), py::arg("n_units"),
        py::arg("n_threads"),
        "Exact squared distances between all rows into the (n, n) float64 out.");
    m.def(
        "sq_distances_to",
        [](const py::list& segments, const py::list& point, const py::array& out,
           int n_threads) {
            py::dtype dt = first_row_dtype(segments);
            if (dt.is(py::dtype::of<float>()))
                to_point<float>(segments, point, out, n_threads);
            else if (dt.is(py::dtype::of<double>()))
                to_point<double>(segments, point, out, n_threads);
            else
                throw py::type_error("only float32 and float64 are supported");
        },
        py::arg("segments"), py::arg("point"), py::arg("out"), py::arg("n_threads"),
        "Squared distance of every row to the point (one array per segment) into out.");
    m.def("monna_matrix", &monna_matrix, py::arg("x"), py::arg("f"), py::arg("trusted"),
          py::arg("n_threads"),
          "MoNNA of a plain (n, d) matrix in one call, or None for the general way.");
}

}  // namespace hierfed
