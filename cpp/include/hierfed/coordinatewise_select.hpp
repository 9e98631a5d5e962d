// Order statistics by selection, for large n: the median and the (weighted) trimmed mean
// without sorting. Part of the coordinatewise family (coordinatewise.hpp includes it).
//
// A block of W coordinates (one SIMD vector, each lane one coordinate) is copied into a tile of
// n rows that stays in L2; every later pass reads the tile, never the updates. A rule needs one
// or two targets: the median the ranks (n - 1) / 2 and n / 2 (one bracket), a trimmed mean the
// ranks k and n - 1 - k (two brackets, found in the same passes).
// 1. A sample of s rows (every n/s-th) is sorted by a Batcher network; per target P of its
//    values around the target's expected sample rank are pivots.
// 2. One pass counts, per lane, the values below each pivot of every open target; the pivots
//    with counts on either side of the target rank r give a bracket [a, b) with
//    #(x < a) <= r < #(x < b). Rare further rounds split a bracket still holding more than
//    kSelectCap values by value into P + 1 parts.
// 3. One pass keeps the values strictly inside each (a, b) per lane (only the lanes that have
//    one, by their bit mask, are looked at; rows of W lanes, so that a vertical Batcher network
//    sorts all lanes' kept values at once) and counts those equal to a; the target is a or a
//    kept value. For the unweighted trimmed mean the same pass sums the values in [b_lo, a_hi),
//    which lie strictly between the thresholds whatever they are; the kept values and the
//    counts give the rest. A lane whose bracket still holds more than kSelectCap values after
//    kSelectRounds passes (adversarial or degenerate data), and a block holding a non-finite
//    value, make the block fall back to the sorting network.
// The selected values are exact order statistics, so the results are the network's: the
// median exactly, the trimmed means up to the order of the float64 sums (row order for the
// middle values here, rank order there). Ties: the trimmed mean keeps #(x <= lo) - k values
// equal to the lower threshold lo and n - k - #(x < hi) equal to the upper one hi; weighted,
// the ones kept at a threshold are, in row order, those a stable sort puts inside ranks
// [k, n - k).
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

// From these n selection beats the sorting networks (measured, one thread, n * d = 5e6): the
// Batcher networks of 257-512 rows cost as much as 512's, selection grows with n only.
constexpr int kSelectMinN = 257;          // the median
constexpr int kSelectMinNTrimmed = 257;   // the unweighted trimmed means beyond the pop network's
constexpr int kSelectMinNWeighted = 256;  // the weighted trimmed means (see weighted_trim_block)
constexpr int kSelectPivots = 7;   // pivots per target and counting pass (P)
constexpr int kSelectCap = 64;     // values a lane may keep per target (a power of 2)
constexpr int kSelectEnough = 4;   // stop when a target's lanes keep at most n / this values
constexpr int kSelectRounds = 6;   // counting passes at most
constexpr int kSelectWide = 4;     // vectors of coordinates loaded per row and visit

// Whether the rule of p at its n is done by selection here (the caller has ruled out the pop
// network); the weighted median keeps the network.
inline bool select_pays(const CoordParams& p) {
    if (p.op == CoordOp::Median) return !p.weights && p.n >= kSelectMinN;
    if (p.op != CoordOp::TrimmedMean) return false;
    return p.n >= (p.weights ? kSelectMinNWeighted : kSelectMinNTrimmed);
}

// Sample rows: 16, 32 or 64, at most a quarter of the rows.
inline int select_sample_size(int n) { return n >= 512 ? 64 : n >= 128 ? 32 : 16; }

// The full Batcher network of m rows (a power of 2 up to kSelectCap), built once per size:
// the sample's and the kept values'.
inline const std::vector<std::int32_t>& full_network(int m) {
    static const std::vector<std::vector<std::int32_t>> nets = [] {
        std::vector<std::vector<std::int32_t>> r;
        for (int size = 1; size <= kSelectCap; size *= 2) r.push_back(sorting_network(size, 0, size));
        return r;
    }();
    return nets[std::size_t(__builtin_ctz(unsigned(m)))];
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

// Bit l set where a_l <= x_l < b_l (a_l < x_l < b_l when Open): two compares into a mask
// register with AVX-512.
template <bool Open, class V>
inline unsigned bits_in(V x, V a, V b) {
    constexpr int from = Open ? _CMP_GT_OQ : _CMP_GE_OQ;
#if defined(__AVX512F__)
    if constexpr (sizeof(V) == 64 && sizeof(x[0]) == 4) {
        __m512 vx, va, vb;
        std::memcpy(&vx, &x, 64);
        std::memcpy(&va, &a, 64);
        std::memcpy(&vb, &b, 64);
        return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(vx, va, from), vx, vb, _CMP_LT_OQ);
    }
    if constexpr (sizeof(V) == 64 && sizeof(x[0]) == 8) {
        __m512d vx, va, vb;
        std::memcpy(&vx, &x, 64);
        std::memcpy(&va, &a, 64);
        std::memcpy(&vb, &b, 64);
        return _mm512_mask_cmp_pd_mask(_mm512_cmp_pd_mask(vx, va, from), vx, vb, _CMP_LT_OQ);
    }
#endif
    (void)from;
    return lane_bits((Open ? x > a : x >= a) & (x < b));
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

// Sorts m rows of W lanes (m a power of 2) lane-wise in place.
template <class V>
inline void sort_rows(V* v, int m) {
    const auto& net = full_network(m);
    for (std::size_t c = 0; c < net.size(); c += 2) {
        const V x = v[net[c]], y = v[net[c + 1]];
        v[net[c]] = simd::vmin(x, y);
        v[net[c + 1]] = simd::vmax(x, y);
    }
}

// One target of a selection: the ranks r_lo <= r_hi <= r_lo + 1 and, per lane, its bracket
// [a, b) with la = #(x < a) <= r_lo and r_hi < lb = #(x < b), then the count = lb - la values
// in [a, b), kept sorted in `kept` (rows of W lanes), and eq = 0; or, when the bracket holds
// too many ties, the count values strictly inside (a, b) and eq = #(x == a).
template <class T>
struct Target {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    int r_lo, r_hi;
    V a, b;
    VI la, lb, count, eq;
    bool open;      // its bracket still holds more than kSelectCap values in some lane
    V* kept;
};

// Scratch of one thread's blocks: the tile (n rows), the sorted sample, the kept values.
template <class T>
struct SelectTile {
    using V = simd::Vec<T>;
    static constexpr int W = simd::Lanes<T>::value;
    int n, s, nv = 1;
    std::vector<V> wide;    // n rows of nv vectors (aligned): the coordinates loaded together
    const V* col = nullptr;  // the current column: row i at col[i * nv]
    std::vector<V> sample;  // s rows of it
    std::vector<V> kept;    // two targets' kSelectCap rows of W lanes
    V lane_min, lane_max;  // each lane's least and greatest value, once have_range
    bool have_range = false;
    explicit SelectTile(int n_)
        : n(n_),
          s(select_sample_size(n_)),
          wide(std::size_t(n_) * kSelectWide),
          sample(s),
          kept(2 * kSelectCap) {}

    // Finds lane_min and lane_max (only needed when a bracket is open at one end: rare).
    void find_range() {
        if (have_range) return;
        V lo = row(0), hi = row(0);
        for (int i = 1; i < n; ++i) {
            lo = simd::vmin(lo, row(i));
            hi = simd::vmax(hi, row(i));
        }
        lane_min = lo;
        lane_max = hi;
        have_range = true;
    }

    // Copies nv vectors of coordinates at j from every row into the wide tile; false when a
    // value is non-finite (its v * 0 is NaN), which also goes into the probe. The next
    // visit's lines are asked for meanwhile: the rows are too many streams for the hardware
    // prefetcher, and lines asked for further ahead would leave L2 before their use.
    bool load(const T* const* src, std::size_t j, int nv_, V& probe) {
        nv = nv_;
        V pr = {};
        for (int i = 0; i < n; ++i) {
            for (int v = 0; v < nv; ++v) {
                const T* at = src[i] + j + std::size_t(v) * W;
                __builtin_prefetch(at + kSelectWide * W, 0, 2);
                const V x = simd::load<V>(at);
                pr += x * T(0);
                wide[std::size_t(i) * nv + v] = x;
            }
        }
        probe += pr;
        return !any_nan(pr);
    }

    // Copies one vector of coordinates at j from every row: the current column.
    void copy_rows(const T* const* src, std::size_t j) {
        nv = 1;
        for (int i = 0; i < n; ++i) wide[std::size_t(i)] = simd::load<V>(src[i] + j);
        col = wide.data();
    }

    // Row i of the current column: W lanes.
    const V& row(int i) const { return col[std::size_t(i) * nv]; }

    // Makes column v of the wide tile the current one and sorts its sample.
    void column(int v) {
        col = wide.data() + v;
        have_range = false;
        for (int q = 0; q < s; ++q) sample[q] = row(int((2 * std::int64_t(q) + 1) * n / (2 * s)));
        sort_rows(sample.data(), s);
    }
};

// First pivots of a target: sample values g ranks apart around its expected sample rank.
template <class T>
inline void sample_pivots(const SelectTile<T>& t, const Target<T>& g_, simd::Vec<T>* piv) {
    constexpr int P = kSelectPivots;
    const int n = t.n, s = t.s;
    const double q = (double(g_.r_lo) + double(g_.r_hi) + 1.0) / (2.0 * n);
    const double centre = q * s - 0.5;
    const int g = std::max(1, int(std::ceil(0.75 * std::sqrt(s * q * (1.0 - q)))));
    for (int i = 0; i < P; ++i) {
        const long r = std::lround(centre + (i - (P - 1) / 2.0) * g);
        piv[i] = t.sample[std::clamp<long>(r, 0, s - 1)];
    }
}

// Where a bracket [a, b) is unbounded, its end is the lane's extreme (found once per tile).
template <class T>
inline void bracket_ends(SelectTile<T>& t, simd::Vec<T> a, simd::Vec<T> b, simd::Vec<T>& bot,
                         simd::Vec<T>& top) {
    const simd::Vec<T> inf = splat<simd::Vec<T>>(std::numeric_limits<T>::infinity());
    if (lane_bits(a == -inf) | lane_bits(b == inf)) t.find_range();
    top = b == inf ? t.lane_max : b;
    bot = a == -inf ? t.lane_min : a;
}

// 0.75 of the largest standard error of a rank guess over the lanes' spans hi - lo (in
// ranks, at least one): the distance between neighbouring later pivots.
template <class T>
inline double pivot_step(simd::VecI<T> lo, simd::VecI<T> hi) {
    simd::Int<T> widest = 1;
    for (int l = 0; l < simd::Lanes<T>::value; ++l) widest = std::max(widest, hi[l] - lo[l]);
    return std::max(1.0, 0.375 * std::sqrt(double(widest)));
}

// kSelectPivots pivots at the fractions f + df (i - (P - 1) / 2) of [bot, top], clamped into it.
template <class T>
inline void spread_pivots(simd::Vec<T> bot, simd::Vec<T> top, simd::VecD<T> f, simd::VecD<T> df,
                          simd::Vec<T>* piv) {
    using VD = simd::VecD<T>;
    constexpr int P = kSelectPivots;
    const VD lo = to_double<T>(bot), half = to_double<T>(top) * 0.5 - lo * 0.5;
    for (int i = 0; i < P; ++i) {
        const VD q = f + df * (i - (P - 1) / 2.0);  // the halves: no overflow near the maximum
        piv[i] = simd::vmax(bot, simd::vmin(from_double<T>(lo + q * half + q * half), top));
    }
}

// Later pivots: per lane, around where the target's rank falls in [a, b) if its values spread
// evenly (the bracket's ends: the lane's extremes where unbounded), 0.75 of that guess's
// largest standard error in ranks apart (at least one rank), clamped into [a, b].
template <class T>
inline void split_pivots(SelectTile<T>& t, const Target<T>& g, simd::Vec<T>* piv) {
    using VD = simd::VecD<T>;
    simd::Vec<T> bot, top;
    bracket_ends(t, g.a, g.b, bot, top);
    const VD la = __builtin_convertvector(g.la, VD);
    const VD m = __builtin_convertvector(g.lb, VD) - la;
    const VD f = (0.5 * (g.r_lo + g.r_hi) + 0.5 - la) / m, df = pivot_step<T>(g.la, g.lb) / m;
    spread_pivots<T>(bot, top, f, df, piv);
}

// Counts, per lane, the values below each of the NT * P pivots in one pass; narrows each
// target's bracket to the pivots whose counts lie on either side of its ranks.
template <class T, int NT>
inline void count_round(const SelectTile<T>& t, Target<T>* const* g,
                        const simd::Vec<T> (*piv)[kSelectPivots]) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    constexpr int P = kSelectPivots;
    VI c[NT][P] = {};
    for (int i = 0; i < t.n; ++i) {
        const V x = t.row(i);
        for (int u = 0; u < NT; ++u)
            for (int k = 0; k < P; ++k) count_below(c[u][k], x, piv[u][k]);
    }
    for (int u = 0; u < NT; ++u) {
        Target<T>& tg = *g[u];
        const VI vlo = splat<VI>(double(tg.r_lo)), vhi = splat<VI>(double(tg.r_hi));
        for (int k = 0; k < P; ++k) {  // ascending: the last pivot that qualifies is the highest
            const VI up = c[u][k] <= vlo;  // pivots lie in [a, b]: each choice narrows
            tg.a = up ? piv[u][k] : tg.a;
            tg.la = up ? c[u][k] : tg.la;
        }
        for (int k = P - 1; k >= 0; --k) {  // descending: the lowest
            const VI down = c[u][k] > vhi;
            tg.b = down ? piv[u][k] : tg.b;
            tg.lb = down ? c[u][k] : tg.lb;
        }
        // Another round costs a few uops per row and pivot; a kept value a branch that may
        // miss and a scalar store: stop when the lanes keep at most n / kSelectEnough.
        using I = simd::Int<T>;
        I widest = 0, total = 0;
        for (int l = 0; l < t.W; ++l) {
            widest = std::max<I>(widest, tg.lb[l] - tg.la[l]);
            total += tg.lb[l] - tg.la[l];
        }
        tg.open = widest > kSelectCap || total * kSelectEnough > t.n;
    }
}

// Brackets for nt targets (1 or 2): counting rounds until each holds at most kSelectCap
// values per lane; false when some bracket is still wider after kSelectRounds.
template <class T>
inline bool bracket_targets(SelectTile<T>& t, Target<T>* targets, int nt) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    V piv[2][kSelectPivots];
    for (int u = 0; u < nt; ++u) {
        Target<T>& g = targets[u];
        g.a = splat<V>(-std::numeric_limits<T>::infinity());
        g.b = splat<V>(std::numeric_limits<T>::infinity());
        g.la = VI{};
        g.lb = splat<VI>(double(t.n));
        g.open = true;
    }
    for (int round = 0; round < kSelectRounds; ++round) {
        Target<T>* open[2];
        int m = 0;
        for (int u = 0; u < nt; ++u) {
            if (!targets[u].open) continue;
            if (round == 0)
                sample_pivots(t, targets[u], piv[m]);
            else
                split_pivots(t, targets[u], piv[m]);
            open[m++] = &targets[u];
        }
        if (m == 0) return true;
        if (m == 2)
            count_round<T, 2>(t, open, piv);
        else
            count_round<T, 1>(t, open, piv);
    }
    for (int u = 0; u < nt; ++u)
        if (targets[u].open) return false;
    return true;
}

// The keep pass of NT bracketed targets: per target the values in [a, b) into its kept
// rows (with Ties, those in (a, b), and #(x == a) into eq); with Mid, the float64 sum of the values in
// [targets[0].b, targets[1].a) in row order. Each target's kept rows are then sorted per lane
// (padded with +inf to a power of 2).
template <class T, int NT, bool Mid, bool Ties>
inline simd::VecD<T> keep_pass(SelectTile<T>& t, Target<T>* g) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using VD = simd::VecD<T>;
    using VN = simd::Vec<double>;
    using Part = simd::VecOfDoubleLanes<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int H = W / simd::Lanes<double>::value;
    int count[NT][W] = {};
    VN sum[H] = {};  // native float64 vectors: GCC keeps a wider one in memory, a store per row
    VI eq0 = {}, eq1 = {};
    auto keep = [&](int u, unsigned bits, const V& x) {  // rarely any bits
        for (; bits != 0; bits &= bits - 1) {
            const int l = __builtin_ctz(bits);
            const int c = count[u][l]++;
            if (c < kSelectCap) g[u].kept[c][l] = x[l];
        }
    };
    const V a0 = g[0].a, b0 = g[0].b, a1 = g[NT - 1].a, b1 = g[NT - 1].b;
    const V* const col = t.col;  // locals: the kept stores could alias the tile's fields
    const std::size_t stride = std::size_t(t.nv);
    const int n = t.n;
    for (int i = 0; i < n; ++i) {
        const V x = col[std::size_t(i) * stride];
        if constexpr (Mid) {
            const V m = (x >= b0) & (x < a1) ? x : V{};
            Part part[H];
            std::memcpy(part, &m, sizeof(V));
            for (int h = 0; h < H; ++h) sum[h] += __builtin_convertvector(part[h], VN);
        }
        if constexpr (Ties) {
            eq0 -= x == a0;
            eq1 -= x == a1;
        }
        const unsigned m0 = bits_in<Ties>(x, a0, b0), m1 = NT == 2 ? bits_in<Ties>(x, a1, b1) : 0u;
        if (__builtin_expect((m0 | m1) != 0, 0)) {
            keep(0, m0, x);
            if (NT == 2) keep(NT - 1, m1, x);
        }
    }
    g[0].eq = eq0;
    g[NT - 1].eq = NT == 2 ? eq1 : eq0;
    for (int u = 0; u < NT; ++u) {
        int widest = 0;
        for (int l = 0; l < W; ++l) {
            g[u].count[l] = count[u][l];
            widest = std::max(widest, count[u][l]);
        }
        int m = 1;
        while (m < widest) m *= 2;
        if (widest > kSelectCap) continue;  // more than kept: NaN input
        const V inf = splat<V>(std::numeric_limits<T>::infinity());
        for (int c = 0; c < m; ++c)
            g[u].kept[c] = splat<VI>(double(c)) < g[u].count ? g[u].kept[c] : inf;
        sort_rows(g[u].kept, m);
    }
    VD total;
    std::memcpy(&total, sum, sizeof(total));
    return total;
}

// The value at rank r of each lane of a kept target into out; false when a lane's rank is
// not among its bracket's values (only NaN input does that).
template <class T>
inline bool ranked(const Target<T>& g, int r, simd::Vec<T>& out) {
    for (int l = 0; l < simd::Lanes<T>::value; ++l) {
        const int j = r - int(g.la[l]) - int(g.eq[l]);
        if (j >= int(g.count[l]) || g.count[l] > kSelectCap) return false;
        out[l] = j < 0 ? g.a[l] : g.kept[j][l];
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
        const V x = t.row(i);
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

// Kept values near the float64 maximum: sums of `scale` times them could overflow in one
// order and not in another, so such blocks take the reference's rank order (the network).
template <class V>
inline bool thresholds_may_overflow(V lo, V hi, double scale) {
    bool huge = false;
    for (std::size_t l = 0; l < sizeof(V) / sizeof(lo[0]); ++l)
        huge |= !(std::max(std::fabs(double(lo[l])), std::fabs(double(hi[l]))) * scale <
                  0.25 * std::numeric_limits<double>::max());
    return huge;
}

// The weighted trimmed mean from thresholds lo (rank k) and hi (rank n - 1 - k) that are
// not tied: one pass over the rows (row(i): W lanes) sums w x and w over lo <= x <= hi and
// counts #(x < lo) and #(x <= hi); when these are k and n - k in every lane, lo <= x <= hi
// are exactly the ranks [k, n - k) of the stable order. False otherwise (ties at a threshold:
// out untouched). Sums in native float64 vectors, H per block (GCC spills and scalarises
// wider ones). Used by the selection below and by coordinatewise.hpp's weighted_trim_block.
template <class T, class Row>
inline bool weighted_between_rows(Row row, const CoordParams& p, simd::Vec<T> lo,
                                  simd::Vec<T> hi, T* out) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using VD = simd::Vec<double>;
    using Part = simd::VecOfDoubleLanes<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int H = W / simd::Lanes<double>::value;
    const int n = p.n;
    VI below = {}, upto = {};
    VD sum[H] = {}, wsum[H] = {};
    const V one = splat<V>(T(1));
    for (int i = 0; i < n; ++i) {
        const V x = row(i);
        count_below(below, x, lo);
        upto -= x <= hi;
        const VI take = (x >= lo) & (x <= hi);
        const V xt = take ? x : V{}, ot = take ? one : V{};
        Part px[H], po[H];
        std::memcpy(px, &xt, sizeof(V));
        std::memcpy(po, &ot, sizeof(V));
        const VD w = splat<VD>(p.weights[i]);
        for (int h = 0; h < H; ++h) {
            sum[h] += __builtin_convertvector(px[h], VD) * w;
            wsum[h] += __builtin_convertvector(po[h], VD) * w;
        }
    }
    if (~(lane_bits(below == splat<VI>(double(p.k))) &
          lane_bits(upto == splat<VI>(double(n - p.k)))) &
        ((1u << W) - 1u))
        return false;
    Part r[H];
    for (int h = 0; h < H; ++h)  // 0/0 = NaN where every kept weight is zero, as the reference
        r[h] = __builtin_convertvector(sum[h] / wsum[h], Part);
    std::memcpy(out, r, sizeof(r));
    return true;
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
        const VD x = widen(reinterpret_cast<const T*>(&t.row(i)) + off);
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

// The same from the current column alone: #(x < lo) and #(x < hi) counted in one pass.
template <class T>
inline void weighted_trimmed_from_thresholds(const SelectTile<T>& t, int k, const double* w,
                                             simd::Vec<T> lo, simd::Vec<T> hi, T* out) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    constexpr int W = simd::Lanes<T>::value;
    VI a = {}, b = {};
    for (int i = 0; i < t.n; ++i) {
        const V x = t.row(i);
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

// #(x < v) per lane for a value v of the target's bracket [a, b), from its counts and kept values.
template <class T>
inline double count_below_kept(const Target<T>& g, int l, T v) {
    int c = int(g.la[l]) + (v > g.a[l] ? int(g.eq[l]) : 0);
    for (int q = 0; q < int(g.count[l]) && g.kept[q][l] < v; ++q) ++c;
    return double(c);
}

template <class T>
inline void weighted_trimmed_from_thresholds(const SelectTile<T>& t, const Target<T>* g, int k,
                                             const double* w, simd::Vec<T> lo, simd::Vec<T> hi,
                                             T* out) {
    constexpr int W = simd::Lanes<T>::value;
    alignas(64) T lo_s[W], hi_s[W];
    alignas(64) double lt_lo[W], lt_hi[W];
    simd::store(lo_s, lo);
    simd::store(hi_s, hi);
    for (int l = 0; l < W; ++l) {
        lt_lo[l] = count_below_kept(g[0], l, lo_s[l]);
        lt_hi[l] = count_below_kept(g[1], l, hi_s[l]);
    }
    for (int h = 0; h < W / simd::Lanes<double>::value; ++h)
        weighted_trimmed_lanes(t, k, w, lo_s, hi_s, lt_lo, lt_hi, out, h);
}

// The unweighted trimmed mean from the keep pass's sum `mid` of the values in [b_lo, a_hi)
// (g[0]: the lower threshold's bracket, g[1]: the upper's, b_lo <= a_hi): the kept values of
// the lower bracket above lo, those of the upper one below hi (and its eq copies of a_hi when
// a_hi < hi), and the copies of lo and hi that ranks [k, n - k) hold.
template <class T>
inline void trimmed_from_brackets(const Target<T>* g, int n, int k, simd::Vec<T> lo,
                                  simd::Vec<T> hi, simd::VecD<T> mid, T* out) {
    for (int l = 0; l < simd::Lanes<T>::value; ++l) {
        const T a = lo[l], b = hi[l];
        if (a == b) {
            out[l] = a;
            continue;
        }
        double sum = mid[l];
        int le = int(g[0].la[l]) + int(g[0].eq[l]), lt = int(g[1].la[l]);
        if (b > g[1].a[l]) {
            lt += int(g[1].eq[l]);
            sum += double(g[1].a[l]) * double(g[1].eq[l]);
        }
        for (int q = 0; q < int(g[0].count[l]); ++q) {
            const T v = g[0].kept[q][l];
            if (v <= a)
                ++le;
            else
                sum += double(v);
        }
        for (int q = 0; q < int(g[1].count[l]) && g[1].kept[q][l] < b; ++q) {
            ++lt;
            sum += double(g[1].kept[q][l]);
        }
        out[l] = T((sum + double(a) * double(le - k) + double(b) * double(n - k - lt)) /
                   double(n - 2 * k));
    }
}

// nv blocks of W coordinates at j by selection: the median or the (weighted) trimmed mean
// into out + j. Returns a bit per block that needs the sorting network (its out untouched).
template <class T>
inline unsigned select_blocks(SelectTile<T>& t, const T* const* rows, std::size_t j, int nv,
                              const CoordParams& p, T* out, simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    using VD = simd::VecD<T>;
    constexpr int W = simd::Lanes<T>::value;
    if (!t.load(rows, j, nv, probe)) return (1u << nv) - 1;  // non-finite: as the network
    const int n = p.n;
    const bool median = p.op == CoordOp::Median;
    Target<T> g[2];
    g[0].kept = t.kept.data();
    g[1].kept = t.kept.data() + kSelectCap;
    if (median) {
        g[0].r_lo = (n - 1) / 2;
        g[0].r_hi = n / 2;
    } else {
        g[0].r_lo = g[0].r_hi = p.k;
        g[1].r_lo = g[1].r_hi = n - 1 - p.k;
    }
    const int nt = median ? 1 : 2;
    unsigned failed = 0;
    for (int v = 0; v < nv; ++v) {
        t.column(v);
        T* o = out + j + std::size_t(v) * W;
        V lo, hi;
        // Brackets still too wide after every round hold many ties: the values equal to a
        // are then counted, not kept.
        const bool ties = !bracket_targets(t, g, nt);
        if (median) {
            if (ties)
                keep_pass<T, 1, false, true>(t, g);
            else
                keep_pass<T, 1, false, false>(t, g);
            if (ranked(g[0], g[0].r_lo, lo) && ranked(g[0], g[0].r_hi, hi))
                store(o, from_double<T>(midpoint(to_double<T>(lo), to_double<T>(hi))));
            else
                failed |= 1u << v;
            continue;
        }
        // The middle values summed in the keep pass when the brackets do not overlap.
        const bool apart = !p.weights && !lane_bits(g[0].b > g[1].a);
        const VD mid = ties    ? (apart ? keep_pass<T, 2, true, true>(t, g)
                                        : keep_pass<T, 2, false, true>(t, g))
                       : apart ? keep_pass<T, 2, true, false>(t, g)
                               : keep_pass<T, 2, false, false>(t, g);
        if (!ranked(g[0], g[0].r_lo, lo) || !ranked(g[1], g[1].r_lo, hi)) {
            failed |= 1u << v;
            continue;
        }
        const double scale = p.weights ? p.weight_sum : double(n - 2 * p.k);
        if (thresholds_may_overflow(lo, hi, scale)) {
            failed |= 1u << v;
            continue;
        }
        alignas(64) T r[W];
        if (p.weights) {
            if (!weighted_between_rows<T>([&](int i) { return t.row(i); }, p, lo, hi, r))
                weighted_trimmed_from_thresholds(t, g, p.k, p.weights, lo, hi, r);
        }
        else if (apart)
            trimmed_from_brackets(g, n, p.k, lo, hi, mid, r);
        else
            trimmed_from_thresholds(t, p.k, lo, hi, r);
        std::memcpy(o, r, sizeof(r));
    }
    return failed;
}

}  // namespace hierfed::HIERFED_ISA
