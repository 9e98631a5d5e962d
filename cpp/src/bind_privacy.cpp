// Python bindings of the privacy kernels: ChaCha20 keystream, noise, exact discrete Gaussian,
// per-update L2 norms and clipping. Every argument is checked here (the kernels write raw
// memory), arrays are kept alive by references held in C++, and the GIL is released while the
// kernels run. The Python layer (hierfed.privacy) validates user input; these checks are the
// last line of defence.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <vector>

#include "hierfed/hadamard.hpp"
#include "hierfed/privacy_dispatch.hpp"
#include "batch.hpp"
#include "hierfed/threads.hpp"

namespace py = pybind11;

namespace hierfed {
namespace {

constexpr std::size_t kMinParallel = std::size_t{1} << 15;  // values below which one thread
constexpr double kTinySquares = 0x1p-900;  // sums below this are redone with scaling (Python)
constexpr double kTinyFactor = 0x1p-900;   // factors below this are applied by Python

ChaChaKey make_key(const py::object& key, const py::object& nonce) {
    auto k = checked<std::uint32_t>(key, "key", false);
    auto n = checked<std::uint32_t>(nonce, "nonce", false);
    if (k.shape(0) != 8) throw py::value_error("key must hold 8 uint32 words");
    if (n.shape(0) != 3) throw py::value_error("nonce must hold 3 uint32 words");
    ChaChaKey c{};
    const auto* kp = static_cast<const std::uint32_t*>(k.data());
    const auto* np_ = static_cast<const std::uint32_t*>(n.data());
    for (int i = 0; i < 8; ++i) c.key[i] = kp[i];
    for (int i = 0; i < 3; ++i) c.nonce[i] = np_[i];
    return c;
}

void check_counter(long long counter, std::size_t blocks) {
    if (counter < 0 || counter >= (1LL << 32))
        throw py::value_error("counter must be in [0, 2^32)");
    if (static_cast<unsigned long long>(counter) + blocks > (1ULL << 32))
        throw py::value_error("the request runs past block 2^32 - 1 of the keystream");
}

int threads_for(std::size_t work, int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    return work < kMinParallel ? 1 : n_threads;
}

void keystream(const py::object& key, const py::object& nonce, long long counter,
               const py::object& out, int n_threads) {
    ChaChaKey k = make_key(key, nonce);
    auto o = checked<std::uint32_t>(out, "out", true);
    const std::size_t n = static_cast<std::size_t>(o.shape(0));
    check_counter(counter, (n + 15) / 16);
    auto* p = static_cast<std::uint32_t*>(o.mutable_data());
    const std::size_t sbs = (n + kSuperWords - 1) / kSuperWords;
    const int t = threads_for(n, n_threads);
    py::gil_scoped_release release;
    parallel_for(sbs, t, [&](std::size_t a, std::size_t b, int) {
        privacy_kernels().keystream(k, static_cast<std::uint32_t>(counter), p, n, a, b);
    });
}

template <class T>
void noise_typed(const ChaChaKey& k, long long counter, py::array& o, const NoiseParams& prm,
                 int n_threads) {
    const std::size_t n = static_cast<std::size_t>(o.shape(0));
    const std::size_t per = noise_per_superblock(prm.kind, sizeof(T) == 4);
    const std::size_t sbs = (n + per - 1) / per;
    check_counter(counter, sbs * kSuperBlock);
    T* p = static_cast<T*>(o.mutable_data());
    const int t = threads_for(n, n_threads);
    py::gil_scoped_release release;
    parallel_for(sbs, t, [&](std::size_t a, std::size_t b, int) {
        if constexpr (sizeof(T) == 4)
            privacy_kernels().noise_f32(k, static_cast<std::uint32_t>(counter), p, n, prm, a, b);
        else
            privacy_kernels().noise_f64(k, static_cast<std::uint32_t>(counter), p, n, prm, a, b);
    });
}

void noise(const py::object& key, const py::object& nonce, long long counter,
           const py::object& out, int kind, double loc, double scale, bool accumulate,
           int n_threads) {
    ChaChaKey k = make_key(key, nonce);
    if (kind < 0 || kind > 2) throw py::value_error("kind must be 0 (uniform), 1 or 2");
    NoiseParams prm{static_cast<NoiseKind>(kind), loc, scale, accumulate};
    if (!py::isinstance<py::array>(out)) throw py::type_error("out must be a numpy array");
    auto dt = py::reinterpret_borrow<py::array>(out).dtype();
    if (dt.is(py::dtype::of<float>())) {
        auto o = checked<float>(out, "out", true);
        noise_typed<float>(k, counter, o, prm, n_threads);
    } else if (dt.is(py::dtype::of<double>())) {
        auto o = checked<double>(out, "out", true);
        noise_typed<double>(k, counter, o, prm, n_threads);
    } else {
        throw py::type_error("out must be float32 or float64");
    }
}

void discrete_gaussian(const py::object& key, const py::object& out, std::uint64_t t,
                       std::uint64_t alpha, std::uint64_t beta, std::uint64_t denom,
                       std::uint64_t ymax, std::size_t chunk, int n_threads) {
    auto k0 = checked<std::uint32_t>(key, "key", false);
    if (k0.shape(0) != 8) throw py::value_error("key must hold 8 uint32 words");
    ChaChaKey k{};
    for (int i = 0; i < 8; ++i) k.key[i] = static_cast<const std::uint32_t*>(k0.data())[i];
    auto o = checked<std::int64_t>(out, "out", true);
    const std::uint64_t limit = std::uint64_t{1} << 62;
    if (t < 1 || t > (std::uint64_t{1} << 32) || alpha < 1 || alpha > limit || beta > limit ||
        denom < 1 || denom > limit || ymax > limit)
        throw py::value_error("discrete_gaussian parameters out of range");
    if (chunk < 1) throw py::value_error("chunk must be >= 1");
    DiscreteGaussianParams prm{t, alpha, beta, denom, ymax};
    const std::size_t n = static_cast<std::size_t>(o.shape(0));
    auto* p = static_cast<std::int64_t*>(o.mutable_data());
    const std::size_t chunks = (n + chunk - 1) / chunk;
    const int th = chunks < 2 ? 1 : n_threads;
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    py::gil_scoped_release release;
    parallel_for(chunks, th, [&](std::size_t a, std::size_t b, int) {
        privacy_kernels().discrete_gaussian(k, p, n, prm, chunk, a, b);
    });
}

// ---- Walsh-Hadamard ------------------------------------------------------------------------

void walsh_hadamard_bound(const py::object& x, int n_threads) {
    auto a = checked<double>(x, "x", true);
    const std::size_t n = static_cast<std::size_t>(a.shape(0));
    if (n == 0 || (n & (n - 1)) != 0) throw py::value_error("x must have a power-of-two length");
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    auto* p = static_cast<double*>(a.mutable_data());
    py::gil_scoped_release release;
    walsh_hadamard(p, n, n_threads);
}

// ---- norms and clipping -----------------------------------------------------------------

template <class T>
struct Rows {
    std::vector<py::object> keep_alive;
    std::vector<const T*> in;  // in[s * n + i]
    std::vector<T*> out;       // out[s * n + i], empty when only norms are wanted
    std::vector<std::size_t> lens;
    std::size_t n = 0;
};

template <class T>
Rows<T> gather(const py::list& segments, const py::object& outs, const py::object& sq) {
    Rows<T> r;
    if (segments.empty()) throw py::value_error("need at least one segment");
    r.n = py::len(segments[0]);
    if (r.n < 1) throw py::value_error("need at least one update");
    auto sqa = checked<double>(sq, "sq", true);
    if (static_cast<std::size_t>(sqa.shape(0)) != r.n)
        throw py::value_error("sq must have one entry per update");
    r.keep_alive.push_back(sqa);
    const bool write = !outs.is_none();
    py::list out_list;
    if (write) {
        out_list = py::reinterpret_borrow<py::list>(outs);
        if (!py::isinstance<py::list>(outs) || out_list.size() != segments.size())
            throw py::value_error("outs must be a list with one list per segment");
    }
    for (std::size_t s = 0; s < segments.size(); ++s) {
        if (!py::isinstance<py::list>(segments[s]))
            throw py::value_error("every segment must be a list of arrays");
        py::list rows = py::reinterpret_borrow<py::list>(segments[s]);
        if (rows.size() != r.n) throw py::value_error("every segment must hold n rows");
        std::size_t len = 0;
        for (std::size_t i = 0; i < r.n; ++i) {
            auto a = checked<T>(rows[i], Where("segments", s, static_cast<long long>(i)), false);
            if (i == 0) len = static_cast<std::size_t>(a.shape(0));
            if (static_cast<std::size_t>(a.shape(0)) != len)
                throw py::value_error("rows of a segment must have the same length");
            r.in.push_back(static_cast<const T*>(a.data()));
            r.keep_alive.push_back(a);
        }
        r.lens.push_back(len);
        if (write) {
            if (!py::isinstance<py::list>(out_list[s]))
                throw py::value_error("outs[s] must be a list of arrays");
            py::list orows = py::reinterpret_borrow<py::list>(out_list[s]);
            if (orows.size() != r.n) throw py::value_error("outs[s] must hold n arrays");
            for (std::size_t i = 0; i < r.n; ++i) {
                auto a = checked<T>(orows[i], Where("outs", s, static_cast<long long>(i)), true);
                if (static_cast<std::size_t>(a.shape(0)) != len)
                    throw py::value_error("outs rows must match the input rows' lengths");
                r.out.push_back(static_cast<T*>(a.mutable_data()));
                r.keep_alive.push_back(a);
            }
        }
    }
    return r;
}

template <class T>
double sum_squares(const T* x, std::size_t len) {
    if constexpr (sizeof(T) == 4)
        return privacy_kernels().sum_squares_f32(x, len);
    else
        return privacy_kernels().sum_squares_f64(x, len);
}

template <class T>
void scale(const T* x, T* out, std::size_t len, double f) {
    if constexpr (sizeof(T) == 4)
        privacy_kernels().scale_f32(x, out, len, f);
    else
        privacy_kernels().scale_f64(x, out, len, f);
}

// The clipping factor of a row from its canonical sum of squares; 0 when Python must decide
// (non-finite, overflowed or tiny sums, or a factor so small that it would lose digits).
inline double clip_factor(double total, double max_norm, double margin) {
    if (!(total >= kTinySquares) || !std::isfinite(total)) return 0.0;
    const double bound = std::sqrt(total) * (1.0 + margin);
    const double f = bound > max_norm ? max_norm / bound : 1.0;
    return f >= kTinyFactor ? f : 0.0;
}

template <class T>
void norms_and_clip(const Rows<T>& r, double* sq, double max_norm, double margin,
                    int n_threads) {
    const std::size_t n = r.n, S = r.lens.size();
    std::size_t per_row = 0;
    for (auto len : r.lens) per_row += len;
    const int t = threads_for(per_row * n, n_threads);
    const bool write = !r.out.empty();
    if (n >= static_cast<std::size_t>(2 * t)) {
        // One row per work item: its sum, then (while it is still in cache) its scaling.
        parallel_for(n, t, [&](std::size_t a, std::size_t b, int) {
            for (std::size_t i = a; i < b; ++i) {
                double total = 0.0;
                for (std::size_t s = 0; s < S; ++s) {
                    const T* x = r.in[s * n + i];
                    double seg = 0.0;
                    for (std::size_t j = 0; j < r.lens[s]; j += kNormBlock)
                        seg += sum_squares(x + j, std::min(kNormBlock, r.lens[s] - j));
                    total += seg;
                }
                sq[i] = total;
                if (!write) continue;
                const double f = clip_factor(total, max_norm, margin);
                if (f == 0.0) continue;
                for (std::size_t s = 0; s < S; ++s)
                    scale(r.in[s * n + i], r.out[s * n + i], r.lens[s], f);
            }
        });
        return;
    }
    // Few rows: every block is a work item; partial sums are combined in the canonical order.
    struct Unit {
        std::size_t s, i, j;
    };
    std::vector<Unit> units;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t s = 0; s < S; ++s)
            for (std::size_t j = 0; j < r.lens[s]; j += kNormBlock) units.push_back({s, i, j});
    std::vector<double> part(units.size());
    parallel_for(units.size(), t, [&](std::size_t a, std::size_t b, int) {
        for (std::size_t u = a; u < b; ++u) {
            const Unit& w = units[u];
            part[u] = sum_squares(r.in[w.s * n + w.i] + w.j,
                                  std::min(kNormBlock, r.lens[w.s] - w.j));
        }
    });
    std::vector<double> factor(n);
    std::size_t u = 0;
    for (std::size_t i = 0; i < n; ++i) {
        double total = 0.0;
        for (std::size_t s = 0; s < S; ++s) {
            double seg = 0.0;
            for (std::size_t j = 0; j < r.lens[s]; j += kNormBlock) seg += part[u++];
            total += seg;
        }
        sq[i] = total;
        factor[i] = clip_factor(total, max_norm, margin);
    }
    if (!write) return;
    parallel_for(units.size(), t, [&](std::size_t a, std::size_t b, int) {
        for (std::size_t v = a; v < b; ++v) {
            const Unit& w = units[v];
            if (factor[w.i] == 0.0) continue;
            scale(r.in[w.s * n + w.i] + w.j, r.out[w.s * n + w.i] + w.j,
                  std::min(kNormBlock, r.lens[w.s] - w.j), factor[w.i]);
        }
    });
}

template <class T>
void run_norms(const py::list& segments, const py::object& outs, double max_norm,
               double margin, const py::object& sq, int n_threads) {
    Rows<T> r = gather<T>(segments, outs, sq);
    double* sqp = static_cast<double*>(py::reinterpret_borrow<py::array>(sq).mutable_data());
    py::gil_scoped_release release;
    norms_and_clip<T>(r, sqp, max_norm, margin, n_threads);
}

void norms_dispatch(const py::list& segments, const py::object& outs, double max_norm,
                    double margin, const py::object& sq, int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    if (segments.empty() || !py::isinstance<py::list>(segments[0]) ||
        py::len(segments[0]) == 0)
        throw py::value_error("need at least one segment of at least one row");
    py::handle first = py::reinterpret_borrow<py::list>(segments[0])[0];
    if (!py::isinstance<py::array>(first)) throw py::type_error("rows must be numpy arrays");
    auto dt = py::reinterpret_borrow<py::array>(first).dtype();
    if (dt.is(py::dtype::of<float>()))
        run_norms<float>(segments, outs, max_norm, margin, sq, n_threads);
    else if (dt.is(py::dtype::of<double>()))
        run_norms<double>(segments, outs, max_norm, margin, sq, n_threads);
    else
        throw py::type_error("rows must be float32 or float64");
}

// ---- one call for a plain matrix ------------------------------------------------------------

// clip_by_l2_norm of an (n, d) matrix, margin and target included (clip_margin, clip_target):
// the clipped copy, with the norms when `want_norms`.
template <class T>
py::object clip_matrix_typed(const py::array& x, double max_norm, bool want_norms,
                             int n_threads) {
    const auto n = static_cast<std::size_t>(x.shape(0));
    const auto d = static_cast<std::size_t>(x.shape(1));
    const double target = clip_target(max_norm, d, sizeof(T) == 4);
    const double margin = clip_margin((d + kNormBlock - 1) / kNormBlock, 1, sizeof(T) == 4);
    py::array_t<T> out({n, d});
    Rows<T> r;
    r.n = n;
    r.lens = {d};
    const T* in = static_cast<const T*>(x.data());
    T* o = out.mutable_data();
    for (std::size_t i = 0; i < n; ++i) {
        r.in.push_back(in + i * d);
        r.out.push_back(o + i * d);
    }
    std::vector<double> sq(n);
    {
        py::gil_scoped_release release;
        norms_and_clip<T>(r, sq.data(), target, margin, n_threads);
    }
    for (double total : sq)
        if (clip_factor(total, target, margin) == 0.0) return py::none();  // a row unwritten
    if (!want_norms) return std::move(out);
    py::array_t<double> norms(static_cast<py::ssize_t>(n));
    double* p = norms.mutable_data();
    for (std::size_t i = 0; i < n; ++i) p[i] = std::sqrt(sq[i]);
    return py::make_tuple(out, norms);
}

// The quick way of hierfed.privacy.clipping.clip_by_l2_norm: for an exact numpy ndarray, 2-D,
// float32 or float64, C-contiguous and aligned, n, d >= 1, and a finite float bound > 0, whose
// every row the kernel clips (no NaN/inf, over- or underflowing sums, tiny factors), the
// clipped copy (and norms); otherwise None, and the caller takes the general way, which
// checks and handles everything else. One Python call for the common case: each Python-level
// step costs 15-90 us with cold caches, more than the kernel at d = 1e3.
py::object clip_matrix(py::handle x, py::handle max_norm, bool want_norms, int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    if (!plain_array(x, 2) || !PyFloat_CheckExact(max_norm.ptr())) return py::none();
    const double bound = PyFloat_AS_DOUBLE(max_norm.ptr());
    if (!(bound > 0.0) || !std::isfinite(bound)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(x);
    if (a.dtype().is(py::dtype::of<float>()))
        return clip_matrix_typed<float>(a, bound, want_norms, n_threads);
    if (a.dtype().is(py::dtype::of<double>()))
        return clip_matrix_typed<double>(a, bound, want_norms, n_threads);
    return py::none();
}

// ARC of an (n, d) matrix: the k = floor(2 f (n - f) / n) rows of largest norm (ties to the
// lower index) clipped to the (k+1)-th largest norm, the others copied; None when a sum of
// squares (even at k = 0: the general way then raises on NaN/inf) or a factor is one Python
// must handle.
template <class T>
py::object arc_matrix_typed(const py::array& x, std::size_t f, int n_threads) {
    const auto n = static_cast<std::size_t>(x.shape(0));
    const auto d = static_cast<std::size_t>(x.shape(1));
    const T* in = static_cast<const T*>(x.data());
    py::array_t<T> out({n, d});
    T* o = out.mutable_data();
    const std::size_t k = 2 * f * (n - f) / n;
    Rows<T> r;
    r.n = n;
    r.lens = {d};
    for (std::size_t i = 0; i < n; ++i) r.in.push_back(in + i * d);
    std::vector<double> sq(n), norms(n), factor(n, 1.0);
    std::vector<std::size_t> order(n);
    {
        py::gil_scoped_release release;
        norms_and_clip<T>(r, sq.data(), 0.0, 0.0, n_threads);
    }
    for (std::size_t i = 0; i < n; ++i) {
        if (!(sq[i] >= kTinySquares) || !std::isfinite(sq[i])) return py::none();
        norms[i] = std::sqrt(sq[i]);
        order[i] = i;
    }
    if (k == 0) {  // every row finite (checked above) and unchanged
        std::memcpy(o, in, n * d * sizeof(T));
        return std::move(out);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return norms[a] > norms[b]; });
    const double target = clip_target(norms[order[k]], d, sizeof(T) == 4);
    const double margin = clip_margin((d + kNormBlock - 1) / kNormBlock, 1, sizeof(T) == 4);
    for (std::size_t j = 0; j < k; ++j) {
        factor[order[j]] = clip_factor(sq[order[j]], target, margin);
        if (factor[order[j]] == 0.0) return py::none();
    }
    py::gil_scoped_release release;
    parallel_for(n, threads_for(n * d, n_threads), [&](std::size_t a, std::size_t b, int) {
        for (std::size_t i = a; i < b; ++i) {
            if (factor[i] == 1.0)
                std::memcpy(o + i * d, in + i * d, d * sizeof(T));
            else
                scale(in + i * d, o + i * d, d, factor[i]);
        }
    });
    return std::move(out);
}

// The quick way of hierfed.adaptive_robust_clipping (as clip_matrix): a plain float32/float64
// matrix and an exact int 0 <= f < n, or None.
py::object arc_matrix(py::handle x, py::handle f, int n_threads) {
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    if (!plain_array(x, 2)) return py::none();
    auto a = py::reinterpret_borrow<py::array>(x);
    const long long fv = plain_count(f, a.shape(0));
    if (fv < 0) return py::none();
    if (a.dtype().is(py::dtype::of<float>()))
        return arc_matrix_typed<float>(a, static_cast<std::size_t>(fv), n_threads);
    if (a.dtype().is(py::dtype::of<double>()))
        return arc_matrix_typed<double>(a, static_cast<std::size_t>(fv), n_threads);
    return py::none();
}

}  // namespace

void bind_privacy(py::module_& m) {
    m.def("chacha20_keystream", &keystream, py::arg("key"), py::arg("nonce"),
          py::arg("counter"), py::arg("out"), py::arg("n_threads"),
          "RFC 8439 keystream words from block `counter` into out (uint32).");
    m.def("chacha20_noise", &noise, py::arg("key"), py::arg("nonce"), py::arg("counter"),
          py::arg("out"), py::arg("kind"), py::arg("loc"), py::arg("scale"),
          py::arg("accumulate"), py::arg("n_threads"),
          "Uniform (0), normal (1) or Laplace (2) draws of the keystream into out.");
    m.def("discrete_gaussian", &discrete_gaussian, py::arg("key"), py::arg("out"),
          py::arg("t"), py::arg("alpha"), py::arg("beta"), py::arg("denom"), py::arg("ymax"),
          py::arg("chunk"), py::arg("n_threads"),
          "Exact discrete Gaussian samples (CKS 2020) into out (int64).");
    m.def("walsh_hadamard", &walsh_hadamard_bound, py::arg("x"), py::arg("n_threads"),
          "The unnormalised Walsh-Hadamard transform of x (float64, power-of-two length) in "
          "place.");
    m.def(
        "l2_sq_norms",
        [](const py::list& s, const py::object& sq, int t) {
            norms_dispatch(s, py::none(), 0.0, 0.0, sq, t);
        },
        py::arg("segments"), py::arg("sq"), py::arg("n_threads"),
        "Canonical float64 sum of squares of every update into sq.");
    m.def("clip_by_l2", &norms_dispatch, py::arg("segments"), py::arg("outs"),
          py::arg("max_norm"), py::arg("margin"), py::arg("sq"), py::arg("n_threads"),
          "Sums of squares into sq; rows with a normal sum scaled into outs.");
    m.def("clip_matrix", &clip_matrix, py::arg("x"), py::arg("max_norm"), py::arg("want_norms"),
          py::arg("n_threads"),
          "A plain (n, d) matrix clipped in one call (and its norms), or None for the general "
          "way.");
    m.def("arc_matrix", &arc_matrix, py::arg("x"), py::arg("f"), py::arg("n_threads"),
          "ARC of a plain (n, d) matrix in one call, or None for the general way.");
}

}  // namespace hierfed
