// Order statistics by selection, for large n: the median and the (weighted) trimmed mean
// without sorting. Part of the coordinatewise family (coordinatewise.hpp includes it).
//
// A block of W coordinates (one SIMD vector, each lane one coordinate) is copied into a tile of
// n rows that stays in L2; every later pass reads the tile, never the updates.
// 1. A sample of s rows (every n/s-th) is sorted by a Batcher network; P of its values around
//    the target's expected sample rank are pivots.
// 2. One pass counts, per lane, the values below each pivot; the pivots with counts on either
//    side of the target rank r give a bracket [a, b) with #(x < a) <= r < #(x < b). Further
//    rounds split the bracket by value into P + 1 parts until it holds few values.
// 3. One pass keeps the values strictly inside (a, b) per lane (only the lanes that have one,
//    by their bit mask, are looked at) and counts those equal to a; the target is a, or found by
//    sorting the few kept values. A lane whose bracket still holds more than kSelectCap values
//    (adversarial or degenerate data) makes the whole block fall back to the sorting network.
// The selected values are exact order statistics, so the results are the network's: the
// median exactly, the trimmed means up to the order of the float64 sums (row order here,
// rank order there). Ties: the trimmed mean keeps #(x <= lo) - k values equal to the lower
// threshold lo and n - k - #(x < hi) equal to the upper one hi; weighted, the ones kept
// at a threshold are, in row order, those a stable sort puts inside ranks [k, n - k).
// Twins: python/hierfed/_kernels/numba/coordinatewise_select.py, the numpy reference
// python/hierfed/_kernels/numpy/coordinatewise.py.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "coordinatewise_lanes.hpp"
#include "simd.hpp"
#include "sorting_network.hpp"
#include "views.hpp"

namespace hierfed::HIERFED_ISA {

using simd::splat;
using simd::store;

constexpr int kSelectMinN = 256;   // below this the sorting networks are as fast (measured)
constexpr int kSelectPivots = 7;   // pivots per counting pass (P)
constexpr int kSelectCap = 64;     // values a lane may keep for the final sort
constexpr int kSelectEnough = 4;  // stop splitting when the brackets' squared sizes sum to <= this * n
constexpr int kSelectRounds = 6;   // counting passes at most
constexpr int kSelectWide = 4;     // vectors of coordinates loaded per row and visit

// Sample rows: 16, 32 or 64, at most a quarter of the rows.
inline int select_sample_size(int n) { return n >= 512 ? 64 : n >= 128 ? 32 : 16; }

// The full Batcher network of the sample size, built once per size.
inline const std::vector<std::int32_t>& sample_network(int s) {
    static const std::vector<std::int32_t> n16 = sorting_network(16, 0, 16);
    static const std::vector<std::int32_t> n32 = sorting_network(32, 0, 32);
    static const std::vector<std::int32_t> n64 = sorting_network(64, 0, 64);
    return s == 16 ? n16 : s == 32 ? n32 : n64;
}

// Bit l set where lane l of the comparison mask m is true (a single instruction on x86).
template <class VI>
inline unsigned lane_bits(VI m) {
    constexpr std::size_t E = sizeof(m[0]), L = sizeof(VI) / E;
#if defined(__AVX512DQ__)
    if constexpr (sizeof(VI) == 64) {
        __m512i v;
        std::memcpy(&v, &m, 64);
        if constexpr (E == 4)
            return _mm512_movepi32_mask(v);
        else
            return _mm512_movepi64_mask(v);
    }
#endif
#if defined(__AVX__)
    if constexpr (sizeof(VI) == 32) {
        __m256i v;
        std::memcpy(&v, &m, 32);
        if constexpr (E == 4)
            return unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(v)));
        else
            return unsigned(_mm256_movemask_pd(_mm256_castsi256_pd(v)));
    }
#endif
#if defined(__SSE2__)
    if constexpr (sizeof(VI) == 16) {
        __m128i v;
        std::memcpy(&v, &m, 16);
        if constexpr (E == 4)
            return unsigned(_mm_movemask_ps(_mm_castsi128_ps(v)));
        else
            return unsigned(_mm_movemask_pd(_mm_castsi128_pd(v)));
    }
#endif
    unsigned bits = 0;
    for (std::size_t l = 0; l < L; ++l) bits |= unsigned(m[l] != 0) << l;
    return bits;
}

// c += 1 in the lanes where x < p: one masked add with AVX-512's mask registers, one
// subtraction of the all-ones compare result elsewhere.
template <class VI, class V>
inline void count_below(VI& c, V x, V p) {
#if HIERFED_VECTOR_BYTES == 64
    c = x < p ? c + 1 : c;
#else
    c -= x < p;
#endif
}

// Scratch of one thread's blocks: the tile (n rows), the sorted sample, the kept values.
template <class T>
struct SelectTile {
    using V = simd::Vec<T>;
    static constexpr int W = simd::Lanes<T>::value;
    int n, s, nv = 1;
    std::vector<V> wide;    // n rows of nv vectors (aligned): the coordinates loaded together
    std::vector<V> rows;    // the current column: n rows of W lanes
    std::vector<V> sample;  // s rows of it
    std::vector<T> kept;    // W lanes * kSelectCap values
    V lane_min, lane_max;  // each lane's least and greatest value, once have_range
    bool have_range = false;
    explicit SelectTile(int n_)
        : n(n_),
          s(select_sample_size(n_)),
          wide(std::size_t(n_) * kSelectWide),
          rows(n_),
          sample(s),
          kept(W * kSelectCap) {}

    // Finds lane_min and lane_max (only needed when a bracket is open at one end: rare).
    void find_range() {
        if (have_range) return;
        V lo = rows[0], hi = rows[0];
        for (int i = 1; i < n; ++i) {
            lo = simd::vmin(lo, rows[i]);
            hi = simd::vmax(hi, rows[i]);
        }
        lane_min = lo;
        lane_max = hi;
        have_range = true;
    }

    // Copies nv vectors of coordinates at j from every row into the wide tile (every value
    // into the probe): several cache lines per row and visit keep the memory streams long.
    void load(const T* const* src, std::size_t j, int nv_, V& probe) {
        nv = nv_;
        V pr = probe;
        for (int i = 0; i < n; ++i) {
            for (int v = 0; v < nv; ++v) {
                const T* at = src[i] + j + std::size_t(v) * W;
                __builtin_prefetch(reinterpret_cast<const char*>(at) + 2048, 0, 0);
                const V x = simd::load<V>(at);
                pr += x * T(0);
                wide[std::size_t(i) * nv + v] = x;
            }
        }
        probe = pr;
    }

    // Makes column v of the wide tile the current one (rows) and sorts its sample.
    void column(int v) {
        for (int i = 0; i < n; ++i) rows[i] = wide[std::size_t(i) * nv + v];
        have_range = false;
        for (int q = 0; q < s; ++q) sample[q] = rows[int((2 * std::int64_t(q) + 1) * n / (2 * s))];
        const auto& net = sample_network(s);
        for (std::size_t c = 0; c < net.size(); c += 2) {
            const V x = sample[net[c]], y = sample[net[c + 1]];
            sample[net[c]] = simd::vmin(x, y);
            sample[net[c + 1]] = simd::vmax(x, y);
        }
    }
};

// Per lane the values at ranks r_lo and r_hi (r_hi - r_lo <= 1) into lo and hi; false when
// some lane could not be resolved (the caller falls back to the sorting network).
template <class T>
bool select_ranks(SelectTile<T>& t, int r_lo, int r_hi, simd::Vec<T>& lo, simd::Vec<T>& hi) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using VD = simd::VecD<T>;
    using I = simd::Int<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int P = kSelectPivots;
    const int n = t.n, s = t.s;
    // The bracket [a, b) per lane: #(x < a) = la <= r_lo and r_hi < lb = #(x < b).
    V a = splat<V>(-std::numeric_limits<T>::infinity());
    V b = splat<V>(std::numeric_limits<T>::infinity());
    VI la = {}, lb = splat<VI>(double(n));
    const VI vlo = splat<VI>(double(r_lo)), vhi = splat<VI>(double(r_hi));
    V piv[P];
    // First round: sample values around the target's expected sample rank, g ranks apart.
    const double q = (double(r_lo) + double(r_hi) + 1.0) / (2.0 * n);
    const double centre = q * s - 0.5;
    const int g = std::max(1, int(std::ceil(0.75 * std::sqrt(s * q * (1.0 - q)))));
    for (int i = 0; i < P; ++i) {
        const long r = std::lround(centre + (i - (P - 1) / 2.0) * g);
        piv[i] = t.sample[std::clamp<long>(r, 0, s - 1)];
    }
    for (int round = 0; round < kSelectRounds; ++round) {
        if (round > 0) {  // split [a, b) by value (b: the lane's maximum when unbounded)
            if (lane_bits(a == splat<V>(-std::numeric_limits<T>::infinity())) |
                lane_bits(b == splat<V>(std::numeric_limits<T>::infinity())))
                t.find_range();
            const V top = b == splat<V>(std::numeric_limits<T>::infinity()) ? t.lane_max : b;
            const V bot = a == splat<V>(-std::numeric_limits<T>::infinity()) ? t.lane_min : a;
            const VD ad = to_double<T>(bot), half = to_double<T>(top) * 0.5 - ad * 0.5;
            for (int i = 0; i < P; ++i) {
                const V v = from_double<T>(ad + half * (2.0 * (i + 1) / (P + 1)));
                piv[i] = simd::vmax(bot, simd::vmin(v, top));
            }
        }
        VI c[P] = {};
        for (int i = 0; i < n; ++i) {
            const V x = t.rows[i];
            for (int k = 0; k < P; ++k) count_below(c[k], x, piv[k]);
        }
        for (int k = 0; k < P; ++k) {  // ascending: the last pivot that qualifies is the highest
            const VI up = c[k] <= vlo;  // pivots lie in [a, b]: each choice narrows
            a = up ? piv[k] : a;
            la = up ? c[k] : la;
        }
        for (int k = P - 1; k >= 0; --k) {  // descending: the lowest
            const VI down = c[k] > vhi;
            b = down ? piv[k] : b;
            lb = down ? c[k] : lb;
        }
        // Another round costs about 4n cycles; sorting the kept values about m^2 per lane.
        I widest = 0, squares = 0;
        for (int l = 0; l < W; ++l) {
            widest = std::max<I>(widest, lb[l] - la[l]);
            squares += (lb[l] - la[l]) * (lb[l] - la[l]);
        }
        if (widest <= kSelectCap && squares <= kSelectEnough * I(n)) break;
    }
    // Keep the values strictly inside (a, b); count those equal to a.
    int count[W] = {};
    VI eq = {};
    T* kept = t.kept.data();
    for (int i = 0; i < n; ++i) {
        const V x = t.rows[i];
        const VI in = (x > a) & (x < b);
        eq -= x == a;
        for (unsigned bits = lane_bits(in); bits != 0; bits &= bits - 1) {  // rarely any
            const int l = __builtin_ctz(bits);
            if (count[l] < kSelectCap) kept[l * kSelectCap + count[l]] = x[l];
            ++count[l];
        }
    }
    for (int l = 0; l < W; ++l) {
        const int m = count[l];
        const int j_lo = r_lo - int(la[l]) - int(eq[l]), j_hi = r_hi - int(la[l]) - int(eq[l]);
        if (m > kSelectCap || j_hi >= m) return false;  // too many kept, or NaN input
        T* v = kept + l * kSelectCap;
        for (int x = 1; x < m; ++x) {  // insertion sort: m is small
            const T key = v[x];
            int y = x - 1;
            for (; y >= 0 && key < v[y]; --y) v[y + 1] = v[y];
            v[y + 1] = key;
        }
        lo[l] = j_lo < 0 ? a[l] : v[j_lo];
        hi[l] = j_hi < 0 ? a[l] : v[j_hi];
    }
    return true;
}

// The trimmed mean of a loaded tile from its thresholds lo (rank k) and hi (rank n - 1 - k):
// the values strictly between them, #(x <= lo) - k copies of lo and n - k - #(x < hi) of hi.
template <class T>
inline void trimmed_from_thresholds(const SelectTile<T>& t, int k, simd::Vec<T> lo,
                                    simd::Vec<T> hi, T* out) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using VD = simd::VecD<T>;
    constexpr int W = simd::Lanes<T>::value;
    const int n = t.n;
    VD sum = {};
    VI le = {}, lt = {};
    for (int i = 0; i < n; ++i) {
        const V x = t.rows[i];
        le -= x <= lo;
        lt -= x < hi;
        sum += to_double<T>((x > lo) & (x < hi) ? x : V{});
    }
    for (int l = 0; l < W; ++l) {
        const double a = double(lo[l]), b = double(hi[l]);
        out[l] = a == b ? lo[l]
                        : T((sum[l] + a * double(le[l] - k) + b * double(n - k - lt[l])) /
                            double(n - 2 * k));
    }
}

// The weighted trimmed mean from the thresholds: in row order, the rows a stable sort puts
// at ranks [k, n - k). Of the rows equal to lo the first k - #(x < lo) are dropped (and,
// when lo == hi, all after the next n - 2k); of those equal to hi > lo the first
// n - k - #(x < hi) are kept. One native float64 vector of lanes at a time (offset h).
template <class T>
inline void weighted_trimmed_lanes(const SelectTile<T>& t, int k, const double* w,
                                   const T* lo, const T* hi, const double* lt_lo,
                                   const double* lt_hi, T* out, int h) {
    using VD = simd::Vec<double>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int WD = simd::Lanes<double>::value;
    using Part = simd::VecOfDoubleLanes<T>;
    const int n = t.n;
    const std::size_t off = std::size_t(h) * WD;
    auto widen = [](const T* at) { return __builtin_convertvector(simd::load<Part>(at), VD); };
    const VD vlo = widen(lo + off), vhi = widen(hi + off), zero = {}, one = splat<VD>(1.0);
    const VD skip = splat<VD>(double(k)) - simd::load<VD>(lt_lo + off);
    const VD end = vlo == vhi ? skip + double(n - 2 * k) : splat<VD>(double(n) + 1.0);
    const VD keep_hi = splat<VD>(double(n - k)) - simd::load<VD>(lt_hi + off);
    VD sum = {}, wsum = {}, seen_lo = {}, seen_hi = {};
    for (int i = 0; i < n; ++i) {
        const VD x = widen(reinterpret_cast<const T*>(&t.rows[i]) + off);
        const VD wi = splat<VD>(w[i]);
        const auto eq_lo = x == vlo, eq_hi = (x == vhi) & (x > vlo);
        const auto take = ((x > vlo) & (x < vhi)) | (eq_lo & (seen_lo >= skip) & (seen_lo < end)) |
                          (eq_hi & (seen_hi < keep_hi));
        seen_lo += eq_lo ? one : zero;
        seen_hi += eq_hi ? one : zero;
        sum += take ? wi * x : zero;
        wsum += take ? wi : zero;
    }
    const VD r = sum / wsum;  // 0/0 = NaN when every kept weight is zero, as the reference
    (void)W;
    simd::store(out + off, __builtin_convertvector(r, Part));
}

template <class T>
inline void weighted_trimmed_from_thresholds(const SelectTile<T>& t, int k, const double* w,
                                             simd::Vec<T> lo, simd::Vec<T> hi, T* out) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    constexpr int W = simd::Lanes<T>::value;
    VI a = {}, b = {};
    for (int i = 0; i < t.n; ++i) {
        const V x = t.rows[i];
        a -= x < lo;
        b -= x < hi;
    }
    alignas(64) T lo_s[W], hi_s[W];
    alignas(64) double lt_lo[W], lt_hi[W];
    simd::store(lo_s, lo);
    simd::store(hi_s, hi);
    for (int l = 0; l < W; ++l) {
        lt_lo[l] = double(a[l]);
        lt_hi[l] = double(b[l]);
    }
    for (int h = 0; h < W / simd::Lanes<double>::value; ++h)
        weighted_trimmed_lanes(t, k, w, lo_s, hi_s, lt_lo, lt_hi, out, h);
}

// nv blocks of W coordinates at j by selection: the median or the (weighted) trimmed mean
// into out + j. Returns a bit per block that needs the sorting network (its out untouched).
template <class T>
inline unsigned select_blocks(SelectTile<T>& t, const T* const* rows, std::size_t j, int nv,
                              const CoordParams& p, T* out, simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    t.load(rows, j, nv, probe);
    const int n = p.n;
    unsigned failed = 0;
    for (int v = 0; v < nv; ++v) {
        t.column(v);
        T* o = out + j + std::size_t(v) * W;
        V lo, hi, unused;
        if (p.op == CoordOp::Median) {
            if (select_ranks(t, (n - 1) / 2, n / 2, lo, hi))
                store(o, from_double<T>(midpoint(to_double<T>(lo), to_double<T>(hi))));
            else
                failed |= 1u << v;
            continue;
        }
        if (!select_ranks(t, p.k, p.k, lo, unused) ||
            !select_ranks(t, n - 1 - p.k, n - 1 - p.k, hi, unused)) {
            failed |= 1u << v;
            continue;
        }
        // Kept values near the float64 maximum: the sums could overflow in one order and not
        // in another, so such blocks take the network's (the reference's) rank order.
        const double scale = p.weights ? p.weight_sum : double(n - 2 * p.k);
        bool huge = false;
        for (int l = 0; l < W; ++l)
            huge |= !(std::max(std::fabs(double(lo[l])), std::fabs(double(hi[l]))) * scale <
                      0.25 * std::numeric_limits<double>::max());
        if (huge) {
            failed |= 1u << v;
            continue;
        }
        alignas(64) T r[W];
        if (p.weights)
            weighted_trimmed_from_thresholds(t, p.k, p.weights, lo, hi, r);
        else
            trimmed_from_thresholds(t, p.k, lo, hi, r);
        std::memcpy(o, r, sizeof(r));
    }
    return failed;
}

}  // namespace hierfed::HIERFED_ISA
