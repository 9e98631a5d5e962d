// The weighted median by selection by weight, for large n: no sort of the n values. Part of
// the coordinatewise family (coordinatewise.hpp includes it); the tile, its sample, the first
// pivots and the lane helpers are coordinatewise_select.hpp's.
//
// The median is the least value v with 2 S(x <= v) > W (S: the weight of the values, W the
// total), and pivots bracket it as they bracket a rank:
// 1. Each row carries one integer increment, its count (1 << shift) plus its weight as a
//    fixed-point fraction floor(w / W * F) (F = 1 << (shift - 1), shift as large as n allows).
//    A counting pass adds, per lane and pivot p, the increments of the rows with x < p: one
//    compare and one masked integer add, as the unweighted count. Each sum holds #(x < p) in
//    its high bits and S(x < p) / W, to within #(x < p) + 1 units of 1 / F, in its low ones.
// 2. The bracket [a, b) takes the highest pivot a with S(x < a) surely <= W / 2 and the lowest
//    b with S(x < b) surely > W / 2 under that bound; the first pivots are the sample's around
//    its median (as the median's), later ones around where the half weight falls in [a, b)
//    if its weight spread evenly over the bracket's values.
// 3. One pass keeps the values in [a, b) with their row index and sums, in float64, the
//    weight below a (AVX-512: no branch, the lanes in the bracket appended to lists by a
//    compress, then distributed to their lanes); once the rounds give up on a bracket holding
//    many ties, the values in (a, b) and the weight at a. The kept values are sorted by a
//    vertical network (their row indices follow) and walked per lane: the first value v
//    whose weight at or below it makes D = 2 S - W positive is the median.
// The reference sums the weights in rank order; these sums differ from its own by rounding
// only (at most n units of W each), so where D(v) > margin and D(below v) < -margin, with
// weighted_median_margin, the reference's two middle ranks both hold v and its median is v.
// Lanes closer than that (exact ties of the two sides) or a bracket holding too many values
// send the block to the sorting networks (coordinatewise.hpp), which decide exactly.
// Twins: python/hierfed/_kernels/numba/coordinatewise_wmedian.py (numba: from n = 256), the
// numpy reference python/hierfed/_kernels/numpy/coordinatewise.py (median).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "coordinatewise_lanes.hpp"
#include "coordinatewise_select.hpp"
#include "simd.hpp"
#include "views.hpp"
#include "wmedian_window.hpp"

namespace hierfed::HIERFED_ISA {

// Below this n the value network and its binary search on rank are as fast (measured, one
// thread, float32, n * d = 5e6, CPU time: n = 50 6.8-7.0 ms either way, n = 64 5.8-7.5
// against 6.2, n = 100 4.8 against 7.3); float32 lanes pack a row's count and weight into
// 31 bits, so up to kWMedianMaxN32 rows (then F >= 2^14).
constexpr int kWMedianMinN = 64;
constexpr int kWMedianMaxN32 = 65535;
// A bracket may keep n / kSelectEnough values in all, or this many per lane on average.
constexpr int kWMedianKeep = 4;

template <class T>
inline bool wmedian_pays(const CoordParams& p) {
    return p.op == CoordOp::Median && p.weights && p.n >= kWMedianMinN &&
           (sizeof(T) == 8 || p.n <= kWMedianMaxN32);
}

// Scratch of one thread: each row's packed increment, the kept values and their row indices.
template <class T>
struct WMedianTile {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using I = simd::Int<T>;
    int shift;  // a row's count in the bits from here up
    I frac;     // F: the weight part's unit fraction is 1 / F
    I total;    // the sum of every row's increment
    std::vector<I> inc;
    std::vector<V> kept;
    std::vector<VI> index;

    explicit WMedianTile(const CoordParams& p)
        : inc(std::size_t(p.n)), kept(kSelectCap), index(kSelectCap) {
        int bits = 0;  // n < 2^bits
        while ((std::int64_t(1) << bits) <= p.n) ++bits;
        shift = int(sizeof(I)) * 8 - 1 - bits;  // n << shift plus at most F fits in a signed I
        frac = I(1) << (shift - 1);
        total = 0;
        for (int i = 0; i < p.n; ++i) {
            // w_i <= W (sums of non-negative terms never fall below a term): at most F each,
            // at most F + 1 in all (rounding), so the weight part never reaches the count bits.
            const I part = I(std::floor(p.weights[i] / p.weight_sum * double(frac)));
            inc[std::size_t(i)] = (I(1) << shift) + std::min(part, frac);
            total += inc[std::size_t(i)];
        }
    }

#if defined(__AVX512F__)
    // Without Ties a bracket holds at most kSelectCap values per lane (wmedian_bracket):
    // lists of that many rows of W lanes, and one spare row for the last full-vector store.
    static constexpr std::size_t kListLen = std::size_t(kSelectCap + 1) * simd::Lanes<T>::value;
    std::vector<T> list_value = std::vector<T>(kListLen);
    std::vector<I> list_lane = std::vector<I>(kListLen), list_row = std::vector<I>(kListLen);

    // Appends the lanes of x set in bits, their lane numbers and the row i at pos; returns
    // the new end.
    int append(int pos, unsigned bits, V x, int i) {
        if constexpr (sizeof(V) == 64 && sizeof(T) == 4) {
            __m512 v;
            std::memcpy(&v, &x, 64);
            const __m512i lanes =
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
            const __mmask16 m = __mmask16(bits);
            _mm512_storeu_ps(list_value.data() + pos, _mm512_maskz_compress_ps(m, v));
            _mm512_storeu_si512(list_lane.data() + pos, _mm512_maskz_compress_epi32(m, lanes));
            _mm512_storeu_si512(list_row.data() + pos, _mm512_set1_epi32(i));
        } else if constexpr (sizeof(V) == 64) {
            __m512d v;
            std::memcpy(&v, &x, 64);
            const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
            const __mmask8 m = __mmask8(bits);
            _mm512_storeu_pd(list_value.data() + pos, _mm512_maskz_compress_pd(m, v));
            _mm512_storeu_si512(list_lane.data() + pos, _mm512_maskz_compress_epi64(m, lanes));
            _mm512_storeu_si512(list_row.data() + pos, _mm512_set1_epi64(i));
        }
        return pos + __builtin_popcount(bits);
    }
#endif

    VI counts(VI acc) const { return acc >> shift; }
    VI parts(VI acc) const { return acc & (frac * 2 - 1); }
    // Per lane whether the weight below the pivot is surely <= W / 2, surely > W / 2.
    VI surely_low(VI acc) const { return 2 * (parts(acc) + counts(acc) + 1) <= frac; }
    VI surely_high(VI acc) const { return 2 * (parts(acc) - 1) > frac; }
};

// The weighted median's bracket per lane: [a, b) and the packed sums below a and b.
template <class T>
struct WBracket {
    simd::Vec<T> a, b;
    simd::VecI<T> sa, sb;
};

// Later pivots: per lane around where the half weight falls in [a, b) if the bracket's weight
// spread evenly over its values (its ends: the lane's extremes where unbounded), 0.75 of that
// rank guess's largest standard error apart, clamped into [a, b].
template <class T>
inline void wmedian_split_pivots(SelectTile<T>& t, const WMedianTile<T>& wt, const WBracket<T>& g,
                                 simd::Vec<T>* piv) {
    using VD = simd::VecD<T>;
    simd::Vec<T> bot, top;
    bracket_ends(t, g.a, g.b, bot, top);
    const auto ca = wt.counts(g.sa), cb = wt.counts(g.sb);
    const double step = pivot_step<T>(ca, cb);
    auto weight = [&](simd::VecI<T> s) {  // S / W in units of 1 / F, the floors' half unit added
        return __builtin_convertvector(wt.parts(s), VD) +
               0.5 * __builtin_convertvector(wt.counts(s), VD);
    };
    const VD wa = weight(g.sa), m = __builtin_convertvector(cb - ca, VD);
    const VD f = (0.5 * double(wt.frac) - wa) / (weight(g.sb) - wa), df = step / m;
    spread_pivots<T>(bot, top, f, df, piv);
}

// Counting rounds until [a, b) holds at most kSelectCap values per lane (and few in all);
// false when it still holds more after kSelectRounds.
template <class T>
inline bool wmedian_bracket(SelectTile<T>& t, const WMedianTile<T>& wt, WBracket<T>& g) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using I = simd::Int<T>;
    constexpr int P = kSelectPivots;
    constexpr int W = simd::Lanes<T>::value;
    const int n = t.n;
    g.a = splat<V>(-std::numeric_limits<T>::infinity());
    g.b = splat<V>(std::numeric_limits<T>::infinity());
    g.sa = VI{};
    g.sb = VI{} + wt.total;
    V piv[P];
    for (int round = 0; round < kSelectRounds; ++round) {
        if (round == 0) {
            Target<T> median;
            median.r_lo = (n - 1) / 2;
            median.r_hi = n / 2;
            sample_pivots(t, median, piv);
        } else {
            wmedian_split_pivots(t, wt, g, piv);
        }
        VI c[P] = {};
        for (int i = 0; i < n; ++i) {
            const V x = t.row(i);
            const I d = wt.inc[std::size_t(i)];
            for (int k = 0; k < P; ++k) c[k] = x < piv[k] ? c[k] + d : c[k];
        }
        for (int k = 0; k < P; ++k) {  // ascending: the last pivot that qualifies is the highest
            const VI up = wt.surely_low(c[k]);
            g.a = up ? piv[k] : g.a;
            g.sa = up ? c[k] : g.sa;
        }
        for (int k = P - 1; k >= 0; --k) {  // descending: the lowest
            const VI down = wt.surely_high(c[k]);
            g.b = down ? piv[k] : g.b;
            g.sb = down ? c[k] : g.sb;
        }
        const VI size = wt.counts(g.sb) - wt.counts(g.sa);
        I widest = 0, total = 0;
        for (int l = 0; l < W; ++l) {
            widest = std::max<I>(widest, size[l]);
            total += size[l];
        }
        if (widest <= kSelectCap && total <= std::max(n / kSelectEnough, kWMedianKeep * W))
            return true;
    }
    return false;
}

// The keep pass and the walk: the median of each lane into out; false (out untouched) where
// a lane keeps more than kSelectCap values or its crossing is not sure by the margin.
template <class T, bool Ties>
inline bool wmedian_finish(const SelectTile<T>& t, WMedianTile<T>& wt, const WBracket<T>& g,
                           const CoordParams& p, T* out) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using VD = simd::Vec<double>;
    using Part = simd::VecOfDoubleLanes<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int WD = simd::Lanes<double>::value;
    constexpr int H = W / WD;
    const int n = p.n;
    int count[W] = {};
    VD below[H] = {}, at[H] = {}, ad[H];
    {
        Part pa[H];
        std::memcpy(pa, &g.a, sizeof(V));
        for (int h = 0; h < H; ++h) ad[h] = __builtin_convertvector(pa[h], VD);
    }
    const VD zero = {};
#if defined(__AVX512F__)
    if constexpr (!Ties && sizeof(V) == 64) {
        // Branch-free: per row a compare, a masked add per half, and the lanes in [a, b)
        // appended to lists (values, lane numbers, the row) by a compress; then distributed.
        int pos = 0;
        for (int i = 0; i < n; ++i) {
            const V x = t.row(i);
            const unsigned lt = lane_bits(x < g.a);
            const __m512d w = _mm512_set1_pd(p.weights[i]);
            for (int h = 0; h < H; ++h) {
                __m512d acc;
                std::memcpy(&acc, &below[h], 64);
                acc = _mm512_mask_add_pd(acc, __mmask8(lt >> (h * WD)), acc, w);
                std::memcpy(&below[h], &acc, 64);
            }
            pos = wt.append(pos, ~lt & lane_bits(x < g.b), x, i);
        }
        for (int e = 0; e < pos; ++e) {
            const int l = int(wt.list_lane[std::size_t(e)]);
            const int c = count[l]++;
            wt.kept[std::size_t(c)][l] = wt.list_value[std::size_t(e)];
            wt.index[std::size_t(c)][l] = wt.list_row[std::size_t(e)];
        }
    } else
#endif
    {
        for (int i = 0; i < n; ++i) {
            const V x = t.row(i);
            const VD w = splat<VD>(p.weights[i]);
            Part px[H];
            std::memcpy(px, &x, sizeof(V));
            for (int h = 0; h < H; ++h) {
                const VD xd = __builtin_convertvector(px[h], VD);
                below[h] += xd < ad[h] ? w : zero;
                if constexpr (Ties) at[h] += xd == ad[h] ? w : zero;
            }
            unsigned bits = bits_in<Ties>(x, g.a, g.b);
            if (__builtin_expect(bits != 0, 0)) {
                for (; bits != 0; bits &= bits - 1) {
                    const int l = __builtin_ctz(bits);
                    const int c = count[l]++;
                    if (c < kSelectCap) {
                        wt.kept[std::size_t(c)][l] = x[l];
                        wt.index[std::size_t(c)][l] = simd::Int<T>(i);
                    }
                }
            }
        }
    }
    int widest = 0;
    for (int l = 0; l < W; ++l) widest = std::max(widest, count[l]);
    if (widest > kSelectCap) return false;
    int m = 1;
    while (m < widest) m *= 2;
    const V inf = splat<V>(std::numeric_limits<T>::infinity());
    for (int c = 0; c < m; ++c) {
        VI have = {};
        for (int l = 0; l < W; ++l) have[l] = c < count[l] ? -1 : 0;
        wt.kept[std::size_t(c)] = have ? wt.kept[std::size_t(c)] : inf;
    }
    const auto& net = full_network(m);  // by value; the row indices follow (ties in any order)
    for (std::size_t c = 0; c < net.size(); c += 2) {
        V& x = wt.kept[std::size_t(net[c])];
        V& y = wt.kept[std::size_t(net[c + 1])];
        VI& ix = wt.index[std::size_t(net[c])];
        VI& iy = wt.index[std::size_t(net[c + 1])];
        const VI swap = y < x;
        const V lo = swap ? y : x, hi = swap ? x : y;
        const VI ilo = swap ? iy : ix, ihi = swap ? ix : iy;
        x = lo;
        y = hi;
        ix = ilo;
        iy = ihi;
    }
    const double total = p.weight_sum, margin = weighted_median_margin(n, total);
    alignas(64) T r[W];
    for (int l = 0; l < W; ++l) {
        double s = below[l / WD][l % WD];
        if (!(2.0 * s - total < -margin)) return false;  // the crossing is not surely above a
        bool found = false;
        if (Ties && at[l / WD][l % WD] > 0.0) {  // the copies of a, which carry weight
            s += at[l / WD][l % WD];
            if (2.0 * s - total > margin) {
                r[l] = g.a[l];
                found = true;
            } else if (!(2.0 * s - total < -margin)) {
                return false;
            }
        }
        for (int c = 0; !found && c < count[l];) {
            const T v = wt.kept[std::size_t(c)][l];
            for (; c < count[l] && wt.kept[std::size_t(c)][l] == v; ++c)
                s += p.weights[wt.index[std::size_t(c)][l]];
            const double d = 2.0 * s - total;
            if (d > margin) {
                r[l] = v;
                found = true;
            } else if (!(d < -margin)) {
                return false;  // the two sides tie to rounding: the networks decide
            }
        }
        if (!found) return false;
    }
    std::memcpy(out, r, sizeof(r));
    return true;
}

// nv blocks of W coordinates at j: the weighted median into out + j. Returns a bit per block
// that needs the sorting networks (its out untouched).
template <class T>
inline unsigned wmedian_blocks(SelectTile<T>& t, WMedianTile<T>& wt, const T* const* rows,
                               std::size_t j, int nv, const CoordParams& p, T* out,
                               simd::Vec<T>& probe) {
    constexpr int W = simd::Lanes<T>::value;
    if (!t.load(rows, j, nv, probe)) return (1u << nv) - 1;  // non-finite: as the network
    unsigned failed = 0;
    for (int v = 0; v < nv; ++v) {
        t.column(v);
        WBracket<T> g;
        T* o = out + j + std::size_t(v) * W;
        const bool done = wmedian_bracket(t, wt, g) ? wmedian_finish<T, false>(t, wt, g, p, o)
                                                    : wmedian_finish<T, true>(t, wt, g, p, o);
        if (!done) failed |= 1u << v;
    }
    return failed;
}

}  // namespace hierfed::HIERFED_ISA
