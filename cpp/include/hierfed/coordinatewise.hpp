// Coordinate-wise kernels (mean, trimmed mean, median) over one range of one segment.
//
// Rows stay where they are: a block of W coordinates (one SIMD vector) is read from every
// row in turn and processed vertically, each lane being one coordinate.
// - trimmed mean with k <= 8, unweighted: a "pop network" in registers, one pass. Each value
//   goes through an insertion network holding the k smallest (lo), the value it ejects
//   through one holding the k largest (hi), and the value ejected there is a kept value and
//   is added to a float64 sum. Only kept values are ever summed: a 1e30 outlier is never
//   added and subtracted, so nothing cancels.
// - large n (select_pays: a few hundred), the median and the other trimmed means (weighted
//   too): selection by counting against pivots, in coordinatewise_select.hpp; the weighted
//   median from n = 64 by a selection by weight (coordinatewise_wmedian.hpp).
// - weighted trimmed mean below that: its thresholds (ranks k and n - 1 - k) by the
//   unweighted machinery (the pop network's ejections for k <= 8, else the value network),
//   then one weighted pass over the rows between them; ties at a threshold are taken by row
//   order, as a stable sort (weighted_trim_block).
// - everything else: the block is copied into a tile and sorted by a Batcher network (pruned
//   to the ranks that are read), or, where that network holds more than 0.55 of the comparators
//   of the register-blocked bitonic merge (tile_merge.hpp; the trimmed means from a few
//   dozen rows, the median from 129), by that merge; the weighted median sorts (value, row index)
//   pairs, so ties go to the lower index as in a stable sort, then sums the weights
//   lane-parallel.
// Every value read also feeds a probe (v * 0 is NaN exactly for NaN/inf) that reports
// non-finite input without a second pass.
// Bound in cpp/src/bind_coordinatewise.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/coordinatewise.py and coordinatewise_tiles.py, the numpy reference
// python/hierfed/_kernels/numpy/coordinatewise.py.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "coordinatewise_lanes.hpp"
#include "coordinatewise_select.hpp"
#include "coordinatewise_wmedian.hpp"
#include "simd.hpp"
#include "sorting_network.hpp"
#include "tile_merge.hpp"
#include "views.hpp"

namespace hierfed::HIERFED_ISA {

using simd::load;
using simd::splat;
using simd::store;
using simd::vmax;
using simd::vmin;

constexpr int kMaxPopTrim = 8;

// Rows are read a vector or two at a time, dozens of rows in turn: too many streams for the
// hardware prefetcher, so each read also asks for the same row further ahead.
#ifndef HIERFED_PREFETCH_BYTES
#define HIERFED_PREFETCH_BYTES 2048
#endif
template <class T>
inline void prefetch_ahead(const T* p) {
    __builtin_prefetch(reinterpret_cast<const char*>(p) + HIERFED_PREFETCH_BYTES, 0, 0);
}

// Rows sorted per aligned group entirely in registers before the tile network runs:
// 16 vectors where there are 32 vector registers (AVX-512), else 8.
constexpr int kSortGroup = HIERFED_VECTOR_BYTES >= 64 ? 16 : 8;

// Batcher's odd-even merge sort of G values as a compile-time list of comparators.
template <int G>
struct GroupNetwork {
    static constexpr int count() {
        int c = 0;
        batcher_comparators(G, 1, [&](int, int) { ++c; });
        return c;
    }
    struct Pairs {
        int a[count()];
        int b[count()];
    };
    static constexpr Pairs pairs() {
        Pairs r{};
        int c = 0;
        batcher_comparators(G, 1, [&](int a, int b) {
            r.a[c] = a;
            r.b[c] = b;
            ++c;
        });
        return r;
    }
    static constexpr Pairs value = pairs();
};

// Sorts v[0..G) lane-wise; fully unrolled so that v stays in registers.
template <int G, class V, std::size_t... C>
inline void sort_group_impl(V* v, std::index_sequence<C...>) {
    constexpr auto& net = GroupNetwork<G>::value;
    ((void)([&] {
         V lo = vmin(v[net.a[C]], v[net.b[C]]);
         v[net.b[C]] = vmax(v[net.a[C]], v[net.b[C]]);
         v[net.a[C]] = lo;
     }()),
     ...);
}
template <int G, class V>
inline void sort_group(V* v) {
    sort_group_impl<G>(v, std::make_index_sequence<GroupNetwork<G>::count()>{});
}

// ---- trimmed mean, small k: the pop network -------------------------------------------
template <class T, int K>
inline void trim_pop_block(const T* const* rows, std::size_t j, int n, T* out,
                           simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    using VD = simd::VecD<T>;
    V lo[K], hi[K];
    for (int t = 0; t < K; ++t) {
        lo[t] = splat<V>(std::numeric_limits<T>::infinity());
        hi[t] = splat<V>(-std::numeric_limits<T>::infinity());
    }
    VD sum = {};
    V pr = probe;
    auto insert_lo = [&](V v) {
        for (int t = 0; t < K; ++t) {
            V a = lo[t];
            lo[t] = vmin(a, v);
            v = vmax(a, v);
        }
        return v;
    };
    auto insert_hi = [&](V v) {
        for (int t = 0; t < K; ++t) {
            V a = hi[t];
            hi[t] = vmax(a, v);
            v = vmin(a, v);
        }
        return v;
    };
    int i = 0;
    for (; i < K; ++i) {  // fill lo; what it ejects are its +inf placeholders
        prefetch_ahead(rows[i] + j);
        V v = load<V>(rows[i] + j);
        pr += v * T(0);
        insert_lo(v);
    }
    for (; i < 2 * K; ++i) {  // fill hi; what it ejects are its -inf placeholders
        prefetch_ahead(rows[i] + j);
        V v = load<V>(rows[i] + j);
        pr += v * T(0);
        insert_hi(insert_lo(v));
    }
    for (; i < n; ++i) {
        prefetch_ahead(rows[i] + j);
        V v = load<V>(rows[i] + j);
        pr += v * T(0);
        sum += to_double<T>(insert_hi(insert_lo(v)));
    }
    probe = pr;
    store(out + j, from_double<T>(sum / double(n - 2 * K)));
}

// ---- mean -------------------------------------------------------------------------------
// Adds R rows at a time into a block's float64 sums, rows in index order (the reference's
// order, so results match it exactly), the sums loaded and stored once per R rows.
template <class T, int R, bool Weighted>
inline void mean_rows(const T* const* rows, const double* w, std::size_t j0, std::size_t nv,
                      simd::VecD<T>* acc, simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    using VD = simd::VecD<T>;
    constexpr int W = simd::Lanes<T>::value;
    V pr = probe;
    for (std::size_t v = 0; v < nv; ++v) {
        VD a = acc[v];
        for (int q = 0; q < R; ++q) {
            V x = load<V>(rows[q] + j0 + v * W);
            pr += x * T(0);
            if constexpr (Weighted)
                a += to_double<T>(x) * splat<VD>(w[q]);
            else
                a += to_double<T>(x);
        }
        acc[v] = a;
    }
    probe = pr;
}

template <class T>
inline bool mean_range(const Segment<T>& seg, std::size_t c0, std::size_t c1,
                       const CoordParams& p) {
    using V = simd::Vec<T>;
    using VD = simd::VecD<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int R = 4;
    constexpr std::size_t B = 2048;  // coordinates per block: the float64 sums stay in L1
    VD acc[B / W];
    double tail[W];
    V probe = {};
    bool bad = false;
    const double* w = p.weights;
    for (std::size_t j0 = c0; j0 < c1; j0 += B) {
        const std::size_t nb = std::min(B, c1 - j0), nv = nb / W;
        for (std::size_t v = 0; v < nv; ++v) acc[v] = VD{};
        int i = 0;
        for (; i + R <= p.n; i += R) {
            if (w)
                mean_rows<T, R, true>(seg.rows + i, w + i, j0, nv, acc, probe);
            else
                mean_rows<T, R, false>(seg.rows + i, nullptr, j0, nv, acc, probe);
        }
        for (; i < p.n; ++i) {
            if (w)
                mean_rows<T, 1, true>(seg.rows + i, w + i, j0, nv, acc, probe);
            else
                mean_rows<T, 1, false>(seg.rows + i, nullptr, j0, nv, acc, probe);
        }
        for (std::size_t t = nv * W; t < nb; ++t) {  // the last partial vector
            double s = 0.0;
            for (int r = 0; r < p.n; ++r) {
                const double x = double(seg.rows[r][j0 + t]);
                bad |= !std::isfinite(x);
                s += w ? x * w[r] : x;
            }
            tail[t - nv * W] = s;
        }
        for (std::size_t v = 0; v < nv; ++v)
            store(seg.out + j0 + v * W, from_double<T>(acc[v] / p.weight_sum));
        for (std::size_t t = nv * W; t < nb; ++t) seg.out[j0 + t] = T(tail[t - nv * W] / p.weight_sum);
    }
    return bad || any_nan(probe);
}

// ---- everything else: sort the block in a tile -----------------------------------------

// Bulyan's last step on a sorted tile: per lane, the (weighted) mean of the p.k values closest
// to the median, ties of distance to the lower row index. Distances |x - med| fall then rise
// along the sorted lane, so the k closest values fill a window of k consecutive ranks holding
// rank m or m + 1 (the closest value); the distance t of the k-th closest is the least, over
// those windows, of the larger distance at the window's two ends. Values closer than t all lie
// in the windows' span; k minus their count is the number e taken at exactly t. The rows are
// then read again in index order, keeping every value closer than t and the first e at t.
// All of it lane-parallel; distances and sums in float64, sums in row order.
// One native float64 vector's worth of lanes (offset `h` of them), so that compares and
// selects stay single instructions (GCC scalarises them on vectors wider than the machine's).
template <class T>
inline void around_median_lanes(const T* const* rows, std::size_t j, const CoordParams& p,
                                const T* tile, T* out, int h) {
    using VD = simd::Vec<double>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int WD = simd::Lanes<double>::value;
    using Part = simd::VecOfDoubleLanes<T>;
    const int n = p.n, keep = p.k, m = (n - 1) / 2;
    const std::size_t off = std::size_t(h) * WD;
    auto widen = [](const T* at) { return __builtin_convertvector(load<Part>(at), VD); };
    auto row = [&](int q) { return widen(tile + std::size_t(q) * W + off); };
    const VD zero = {}, one = splat<VD>(1.0);
    const VD vmed = midpoint(row(m), row(n / 2));
    auto dist = [&](VD x) {
        VD d = x - vmed;
        return d < zero ? -d : d;
    };
    const int first = std::max(0, m - keep + 1), last = std::min(m + 1, n - keep);
    VD vthr = splat<VD>(std::numeric_limits<double>::infinity());
    for (int a = first; a <= last; ++a)
        vthr = vmin(vthr, vmax(dist(row(a)), dist(row(a + keep - 1))));
    VD closer = {};
    for (int q = first; q <= std::min(n - 1, m + keep); ++q)
        closer += dist(row(q)) < vthr ? one : zero;
    const VD vties = splat<VD>(double(keep)) - closer;
    VD sum = {}, wsum = {}, seen = {};
    for (int i = 0; i < n; ++i) {
        const VD x = widen(rows[i] + j + off);
        const VD d = dist(x);
        const auto eq = d == vthr;
        const auto take = (d < vthr) | (eq & (seen < vties));
        seen += eq ? one : zero;
        if (p.weights) {
            const VD w = splat<VD>(p.weights[i]);
            sum += take ? w * x : zero;
            wsum += take ? w : zero;
        } else {
            sum += take ? x : zero;
        }
    }
    const VD r = p.weights ? sum / wsum : sum / double(keep);
    store(out + j + off, __builtin_convertvector(r, Part));
}

template <class T>
inline void around_median(const T* const* rows, std::size_t j, const CoordParams& p,
                          const T* tile, T* out) {
    for (int h = 0; h < simd::Lanes<T>::value / simd::Lanes<double>::value; ++h)
        around_median_lanes(rows, j, p, tile, out, h);
}

// Loads a block into the tile, sorting each aligned group of kSortGroup rows in registers on
// the way, then merges them: by p.network (pruned to the ranks read afterwards), or where
// p.merge_tile by the register-blocked passes of tile_merge.hpp, which with `sum` add ranks
// [p.k, n - p.k) into it instead of finishing the tile.
template <class T>
inline void sort_values(const T* const* rows, std::size_t j, const CoordParams& p, T* tile,
                        simd::Vec<T>& probe, simd::VecD<T>* sum = nullptr) {
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    const int n = p.n;
    V pr = probe;
    const V pinf = splat<V>(std::numeric_limits<T>::infinity());
    for (int g = 0; g < n; g += kSortGroup) {
        V v[kSortGroup];
        const int m = std::min(kSortGroup, n - g);
        for (int q = 0; q < kSortGroup; ++q) {
            if (q < m) prefetch_ahead(rows[g + q] + j);
            v[q] = q < m ? load<V>(rows[g + q] + j) : pinf;
            pr += q < m ? v[q] * T(0) : V{};
        }
        // The last group may be short: sort it with the smallest network that fits.
        if (m > kSortGroup / 2)
            sort_group<kSortGroup>(v);
        else if (m > 4)
            sort_group<8>(v);
        else if (m > 2)
            sort_group<4>(v);
        else if (m == 2)
            sort_group<2>(v);
        for (int q = 0; q < m; ++q) store(tile + std::size_t(g + q) * W, v[q]);
    }
    probe = pr;
    if (p.merge_tile)
        return merge_sorted_groups<T, kSortGroup>(tile, p.merge_rows, n, p.k, n - p.k, sum);
    const std::int32_t* net = p.network;
    const std::int32_t* const net_end = net + 2 * std::ptrdiff_t(p.network_len);
    for (; net != net_end; net += 2) {
        T* a = tile + std::size_t(net[0]) * W;
        T* b = tile + std::size_t(net[1]) * W;
        V x = load<V>(a), y = load<V>(b);
        store(a, vmin(x, y));
        store(b, vmax(x, y));
    }
}

// The unweighted median, trimmed mean or mean around the median of a block, by sort_values.
template <class T>
inline void value_tile_block(const T* const* rows, std::size_t j, const CoordParams& p, T* tile,
                             T* out, simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    using VD = simd::VecD<T>;
    constexpr int W = simd::Lanes<T>::value;
    const int n = p.n;
    VD sum = {};
    const bool fused = p.merge_tile && p.op == CoordOp::TrimmedMean;
    sort_values(rows, j, p, tile, probe, fused ? &sum : nullptr);
    if (p.op == CoordOp::AroundMedian) return around_median(rows, j, p, tile, out);
    auto row = [&](int r) { return to_double<T>(load<V>(tile + std::size_t(r) * W)); };
    VD r;
    if (p.op == CoordOp::Median) {
        r = midpoint(row((n - 1) / 2), row(n / 2));
    } else {
        if (!fused)
            for (int q = p.k; q < n - p.k; ++q) sum += row(q);
        r = sum / double(n - 2 * p.k);
    }
    store(out + j, from_double<T>(r));
}

// The weighted median of a tile sorted by (value, row index), one native float64 vector of
// lanes at a time (offset h): above[q], the weight above rank q, summed downwards; c, the
// weight at or below it, summed upwards; lo the first rank with c >= above, hi the first
// with c > above (the reference's sums and comparisons, lane-parallel). above: n vectors.
template <class T>
inline void weighted_median_lanes(const T* tile, const simd::Int<T>* itile, const double* w,
                                  int n, simd::Vec<double>* above, T* out, int h) {
    using VD = simd::Vec<double>;
    using VM = decltype(VD{} < VD{});
    constexpr int W = simd::Lanes<T>::value;
    constexpr int WD = simd::Lanes<double>::value;
    const std::size_t off = std::size_t(h) * WD;
    auto wt = [&](int q) {
        VD r;
        for (int l = 0; l < WD; ++l) r[l] = w[itile[std::size_t(q) * W + off + std::size_t(l)]];
        return r;
    };
    auto val = [&](int q) {
        VD r;
        for (int l = 0; l < WD; ++l) r[l] = double(tile[std::size_t(q) * W + off + std::size_t(l)]);
        return r;
    };
    above[n - 1] = VD{};
    for (int q = n - 2; q >= 0; --q) above[q] = above[q + 1] + wt(q + 1);
    VD c = {}, lo = {}, hi = {};
    VM have_lo = {}, have_hi = {};
    for (int q = 0; q < n; ++q) {
        c += wt(q);
        const VM now_lo = ~have_lo & (c >= above[q]), now_hi = ~have_hi & (c > above[q]);
        const VD x = val(q);
        lo = now_lo ? x : lo;
        hi = now_hi ? x : hi;
        have_lo |= now_lo;
        have_hi |= now_hi;
    }
    const VD r = midpoint(lo, hi);
    for (int l = 0; l < WD; ++l) out[off + std::size_t(l)] = T(r[l]);
}

// The weighted median without the (value, index) network: the block's values sorted by the
// value network (tile) on the ranks where the median can lie, then per lane a binary search
// over those ranks for the least value v with D(v) = 2 S(x <= v) - W > 0 (S: weights summed
// in row order, W: the total), one pass over the rows per step. The reference's rank-order sums
// differ from these by rounding only (at most n units of W each), so where D exceeds a
// margin of 8 (n + 2) units of W at v and falls below minus it at the next smaller value, the
// reference's lo and hi ranks both fall among the copies of v and its median is v. Lanes
// closer than that (exact ties of the two sides, as equal weights at even n) make the block
// take the pair network (false, out untouched).
// Native float64 vectors, H per block; the sums in any order (only their sign past the
// margin counts), so rows go two at a time into separate sums: short dependency chains.
template <class T>
inline bool weighted_median_search(const T* const* rows, std::size_t j, const CoordParams& p,
                                   const T* tile, T* out) {
    using VD = simd::Vec<double>;
    using VL = simd::VecI<double>;
    using Part = simd::VecOfDoubleLanes<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int WD = simd::Lanes<double>::value;
    constexpr int H = W / WD;
    const int n = p.n;
    const double total = p.weight_sum;
    const VD margin = splat<VD>(weighted_median_margin(n, total)), zero = {};
    auto lanes = [&](const T* at, int h) {
        return __builtin_convertvector(load<Part>(at + std::size_t(h) * WD), VD);
    };
    // Per lane: D(rank a) <= 0, D(rank b) > 0; at the start, from the weights alone
    // (p.wm_low, p.wm_high: weighted_median_window), D < -margin at every value below rank
    // a + 1 and D > margin at rank b, and p.network sorted ranks [a + 1, b], all a probe reads.
    VL a[H], b[H], mid[H];
    VD da[H], db[H], probe[H];
    for (int h = 0; h < H; ++h) {
        a[h] = splat<VL>(double(p.wm_low - 1));
        b[h] = splat<VL>(double(p.wm_high));
        da[h] = splat<VD>(-std::numeric_limits<double>::infinity());
        db[h] = splat<VD>(std::numeric_limits<double>::infinity());
    }
    for (int width = p.wm_high - p.wm_low + 1; width > 1; width = (width + 1) / 2) {  // >= b - a
        for (int h = 0; h < H; ++h) {
            mid[h] = (b[h] - a[h]) > 1 ? (a[h] + b[h]) >> 1 : b[h];
            for (int q = 0; q < WD; ++q)
                probe[h][q] = double(tile[std::size_t(mid[h][q]) * W + std::size_t(h * WD + q)]);
        }
        VD even[H] = {}, odd[H] = {};
        int i = 0;
        for (; i + 2 <= n; i += 2) {
            const VD w0 = splat<VD>(p.weights[i]), w1 = splat<VD>(p.weights[i + 1]);
            for (int h = 0; h < H; ++h) {
                even[h] += lanes(rows[i] + j, h) <= probe[h] ? w0 : zero;
                odd[h] += lanes(rows[i + 1] + j, h) <= probe[h] ? w1 : zero;
            }
        }
        if (i < n) {
            const VD w0 = splat<VD>(p.weights[i]);
            for (int h = 0; h < H; ++h) even[h] += lanes(rows[i] + j, h) <= probe[h] ? w0 : zero;
        }
        for (int h = 0; h < H; ++h) {
            const VD d = 2.0 * (even[h] + odd[h]) - total;
            const VL open = (b[h] - a[h]) > 1;
            const VL up = open & (d > zero), down = open & ~up;
            b[h] = up ? mid[h] : b[h];
            db[h] = up ? d : db[h];
            a[h] = down ? mid[h] : a[h];
            da[h] = down ? d : da[h];
        }
    }
    alignas(64) T r[W];
    for (int h = 0; h < H; ++h) {
        const VL sure = (db[h] > margin) & (da[h] < -margin);
        for (int q = 0; q < WD; ++q) {
            if (!sure[q]) return false;
            r[h * WD + q] = tile[std::size_t(b[h][q]) * W + std::size_t(h * WD + q)];
        }
    }
    std::memcpy(out + j, r, sizeof(r));
    return true;
}

// The weighted rules by the stable (value, row index) network p.pair_network: the weighted
// median, and the weighted trimmed mean where its thresholds cannot be used (sums that could
// overflow in some order: the reference's rank order, as the network gives).
template <class T>
inline void pair_tile_block(const T* const* rows, std::size_t j, const CoordParams& p, T* tile,
                            simd::Int<T>* itile, simd::Vec<double>* above, T* out,
                            simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    using VI = simd::VecI<T>;
    using I = simd::Int<T>;
    constexpr int W = simd::Lanes<T>::value;
    const int n = p.n;
    V pr = probe;
    for (int i = 0; i < n; ++i) {
        prefetch_ahead(rows[i] + j);
        V v = load<V>(rows[i] + j);
        pr += v * T(0);
        store(tile + std::size_t(i) * W, v);
        store(itile + std::size_t(i) * W, splat<VI>(double(i)));
    }
    probe = pr;
    const std::int32_t* net = p.pair_network;
    const std::int32_t* const net_end = net + 2 * std::ptrdiff_t(p.pair_network_len);
    for (; net != net_end; net += 2) {
        T* a = tile + std::size_t(net[0]) * W;
        T* b = tile + std::size_t(net[1]) * W;
        I* ia = itile + std::size_t(net[0]) * W;
        I* ib = itile + std::size_t(net[1]) * W;
        V x = load<V>(a), y = load<V>(b);
        VI xi = load<VI>(ia), yi = load<VI>(ib);
        VI gt = (x > y) | ((x == y) & (xi > yi));
        store(a, gt ? y : x);
        store(b, gt ? x : y);
        store(ia, gt ? yi : xi);
        store(ib, gt ? xi : yi);
    }
    const double* w = p.weights;
    if (p.op == CoordOp::Median) {
        for (int h = 0; h < W / simd::Lanes<double>::value; ++h)
            weighted_median_lanes(tile, itile, w, n, above, out + j, h);
        return;
    }
    for (int l = 0; l < W; ++l) {
        double sum = 0.0, ws = 0.0;
        for (int q = p.k; q < n - p.k; ++q) {
            const double wq = w[itile[std::size_t(q) * W + l]];
            sum += wq * double(tile[std::size_t(q) * W + l]);
            ws += wq;
        }
        out[j + l] = T(sum / ws);
    }
}

// ---- weighted trimmed mean: unweighted thresholds, then one weighted pass -------------
// The thresholds lo (rank k) and hi (rank n - 1 - k) do not depend on the weights. k <=
// kMaxPopTrim: the pop network, where the least value ejected by lo is rank k and the greatest
// ejected by hi rank n - 1 - k; else the value network. Then one pass over the rows (in L1 by
// now) sums w x and w over lo <= x <= hi, and counts #(x < lo) and #(x <= hi): when these are
// k and n - k in every lane, lo <= x <= hi are exactly the ranks [k, n - k) of the stable
// order. Otherwise (ties at a threshold) the block goes to weighted_trimmed_from_thresholds
// (coordinatewise_select.hpp), which takes the tied rows by row order.
template <class T, int K>
inline void pop_thresholds(const T* const* rows, std::size_t j, int n, simd::Vec<T>& lo_thr,
                           simd::Vec<T>& hi_thr, simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    V lo[K > 0 ? K : 1], hi[K > 0 ? K : 1];
    for (int t = 0; t < K; ++t) {
        lo[t] = splat<V>(std::numeric_limits<T>::infinity());
        hi[t] = splat<V>(-std::numeric_limits<T>::infinity());
    }
    V a = splat<V>(std::numeric_limits<T>::infinity());
    V b = splat<V>(-std::numeric_limits<T>::infinity());
    V pr = probe;
    for (int i = 0; i < n; ++i) {
        prefetch_ahead(rows[i] + j);
        V v = load<V>(rows[i] + j);
        pr += v * T(0);
        for (int t = 0; t < K; ++t) {
            V x = lo[t];
            lo[t] = vmin(x, v);
            v = vmax(x, v);
        }
        a = vmin(a, v);  // rows < K eject lo's +inf placeholders
        if (i < K) continue;
        for (int t = 0; t < K; ++t) {
            V x = hi[t];
            hi[t] = vmax(x, v);
            v = vmin(x, v);
        }
        b = vmax(b, v);  // rows < 2K eject hi's -inf placeholders
    }
    probe = pr;
    lo_thr = a;
    hi_thr = b;
}

// The weighted pass over lo <= x <= hi of the rows (weighted_between_rows in
// coordinatewise_select.hpp); false where a threshold is tied (out untouched).
template <class T>
inline bool weighted_between(const T* const* rows, std::size_t j, const CoordParams& p,
                             simd::Vec<T> lo, simd::Vec<T> hi, T* out) {
    return weighted_between_rows<T>([&](int i) { return load<simd::Vec<T>>(rows[i] + j); }, p,
                                    lo, hi, out + j);
}

template <class T>
inline void weighted_trim_block(const T* const* rows, std::size_t j, const CoordParams& p,
                                bool may_overflow, SelectTile<T>& sel, T* tile,
                                simd::Int<T>* itile, simd::Vec<double>* above, T* out,
                                simd::Vec<T>& probe) {
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    const int n = p.n, k = p.k;
    V lo, hi;
    switch (k) {
#define HIERFED_THRESHOLD_CASE(K) \
    case K:                       \
        pop_thresholds<T, K>(rows, j, n, lo, hi, probe); break;
        HIERFED_THRESHOLD_CASE(0) HIERFED_THRESHOLD_CASE(1) HIERFED_THRESHOLD_CASE(2)
        HIERFED_THRESHOLD_CASE(3) HIERFED_THRESHOLD_CASE(4) HIERFED_THRESHOLD_CASE(5)
        HIERFED_THRESHOLD_CASE(6) HIERFED_THRESHOLD_CASE(7) HIERFED_THRESHOLD_CASE(8)
#undef HIERFED_THRESHOLD_CASE
        default:
            sort_values(rows, j, p, tile, probe);
            lo = load<V>(tile + std::size_t(k) * W);
            hi = load<V>(tile + std::size_t(n - 1 - k) * W);
    }
    if (may_overflow && thresholds_may_overflow(lo, hi, p.weight_sum)) return pair_tile_block(rows, j, p, tile, itile, above, out, probe);
    if (weighted_between(rows, j, p, lo, hi, out)) return;
    sel.copy_rows(rows, j);
    alignas(64) T r[W];
    weighted_trimmed_from_thresholds(sel, k, p.weights, lo, hi, r);
    std::memcpy(out + j, r, sizeof(r));
}

// ---- dispatch over the block kinds, with the tail of a range padded into a tile ---------
template <class T>
inline bool coordinatewise_range(const Segment<T>& seg, std::size_t c0, std::size_t c1,
                                 const CoordParams& p) {
    using V = simd::Vec<T>;
    using I = simd::Int<T>;
    constexpr int W = simd::Lanes<T>::value;
    if (p.op == CoordOp::Mean || (p.op == CoordOp::TrimmedMean && p.k == 0 && !p.weights))
        return mean_range(seg, c0, c1, p);
    const int n = p.n;
    const bool pop = !p.weights && p.op == CoordOp::TrimmedMean && p.k <= kMaxPopTrim;
    constexpr std::size_t bw = W;  // coordinates per block: one vector
    // Sort tile, padded tail rows, index tile; 64-byte aligned so that no vector load or
    // store splits a cache line (which defeats store-to-load forwarding).
    const std::size_t tile_len = std::size_t(std::max(n, p.merge_rows)) * bw;
    std::vector<char> scratch(2 * tile_len * sizeof(T) + tile_len * sizeof(I) + 64);
    // The weighted median's weight above each rank (a float64 vector per rank).
    std::vector<simd::Vec<double>> above(p.weights ? n : 0);
    T* tile = reinterpret_cast<T*>((reinterpret_cast<std::uintptr_t>(scratch.data()) + 63) &
                                   ~std::uintptr_t(63));
    T* pad = tile + tile_len;
    I* itile = reinterpret_cast<I*>(pad + tile_len);
    std::fill(tile + std::size_t(n) * bw, pad, std::numeric_limits<T>::infinity());
    V probe = {};
    // Large n: selection (coordinatewise_select.hpp) for the median and the trimmed means
    // other than the pop network's (weighted too), by weight for the weighted median
    // (coordinatewise_wmedian.hpp).
    const bool select = !pop && select_pays(p);
    const bool wselect = wmedian_pays<T>(p);
    const bool weighted_trim = p.weights && p.op == CoordOp::TrimmedMean;
    const bool may_overflow = double(std::numeric_limits<T>::max()) * p.weight_sum >=
                              0.25 * std::numeric_limits<double>::max();
    std::vector<SelectTile<T>> selector;  // weighted trimmed means keep their rows here
    if (select || weighted_trim || wselect) selector.emplace_back(n);
    std::vector<WMedianTile<T>> wselector;
    if (wselect) wselector.emplace_back(p);
    // nv blocks at j by selection; a bit per block left to `block`.
    auto visit = [&](const T* const* rows, std::size_t at, int nv, T* out) {
        return wselect ? wmedian_blocks(selector[0], wselector[0], rows, at, nv, p, out, probe)
                       : select_blocks(selector[0], rows, at, nv, p, out, probe);
    };
    auto block = [&](const T* const* rows, std::size_t j, T* out) {
        if (weighted_trim) {
            weighted_trim_block(rows, j, p, may_overflow, selector[0], tile, itile, above.data(),
                                out, probe);
        } else if (p.weights && p.op == CoordOp::Median) {
            if (p.value_network_first) {
                sort_values(rows, j, p, tile, probe);
                if (weighted_median_search(rows, j, p, tile, out)) return;
            }
            pair_tile_block(rows, j, p, tile, itile, above.data(), out, probe);
        } else if (pop) {
            switch (p.k) {
#define HIERFED_POP_CASE(K) \
    case K:                 \
        trim_pop_block<T, K>(rows, j, n, out, probe); break;
                HIERFED_POP_CASE(1) HIERFED_POP_CASE(2) HIERFED_POP_CASE(3)
                HIERFED_POP_CASE(4) HIERFED_POP_CASE(5) HIERFED_POP_CASE(6)
                HIERFED_POP_CASE(7) HIERFED_POP_CASE(8)
#undef HIERFED_POP_CASE
                default: break;
            }
        } else {  // the around-median rule reads weights itself
            value_tile_block(rows, j, p, tile, out, probe);
        }
    };
    std::size_t j = c0;
    while ((select || wselect) && j + bw <= c1) {  // up to kSelectWide blocks per visit
        const int nv = int(std::min<std::size_t>(kSelectWide, (c1 - j) / bw));
        const unsigned failed = visit(seg.rows, j, nv, seg.out);
        for (int v = 0; v < nv; ++v)
            if (failed >> v & 1u) block(seg.rows, j + std::size_t(v) * bw, seg.out);
        j += std::size_t(nv) * bw;
    }
    for (; j + bw <= c1; j += bw) block(seg.rows, j, seg.out);
    if (j < c1) {  // the last partial block: pad each row's tail with zeros
        const std::size_t m = c1 - j;
        std::vector<const T*> padded(n);
        for (int i = 0; i < n; ++i) {
            T* r = pad + std::size_t(i) * bw;
            std::fill(r, r + bw, T(0));
            std::copy(seg.rows[i] + j, seg.rows[i] + c1, r);
            padded[i] = r;
        }
        std::vector<T> out(bw);
        if (!(select || wselect) || visit(padded.data(), 0, 1, out.data()))
            block(padded.data(), 0, out.data());
        std::copy(out.begin(), out.begin() + m, seg.out + j);
    }
    return any_nan(probe);
}

}  // namespace hierfed::HIERFED_ISA
