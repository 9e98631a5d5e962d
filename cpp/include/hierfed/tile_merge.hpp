// The merge levels of a value tile's sort, register-blocked: bitonic merges of its sorted
// groups in passes that each load G vectors, run several comparator stages on them in
// registers and store them once. Part of the coordinatewise family (coordinatewise.hpp).
//
// Applying a flat comparator list (sorting_network) to the tile costs two loads and two
// stores per comparator; from two merge levels up the tile's loads and stores, not its
// min/max, bound that (measured: about 3x the cost per comparator). Here a merge of two sorted
// runs of m rows is the "flip" stage (row i against row 2m - 1 - i of the pair) followed by
// half-cleaners of strides m/2, ..., 1, all ascending; a pass holds the flip and the next
// log2(G/2) strides, or log2(G) strides, for G rows at once. More comparators than Batcher's
// odd-even merges, a quarter of the memory traffic.
//
// The tile holds n real rows and +inf from n to N (the next power of two; the caller fills
// them once). A comparator whose upper row is >= n leaves +inf there, so those rows stay +inf,
// and groups lying wholly at or above n are skipped. The sorted tile equals the odd-even
// network's (both sort the same values; only equal values of opposite sign, +-0, may trade
// places), so the numba twin (coordinatewise_tiles.py) keeps its network and gives the same
// results; tests/test_tile_merge.py checks every instruction-set build.
#pragma once
#include <cstddef>

#include "coordinatewise_lanes.hpp"
#include "simd.hpp"

namespace hierfed::HIERFED_ISA {

// One compare-exchange: the smaller value to a, the larger to b.
template <class V>
inline void compare_exchange(V& a, V& b) {
    const V lo = simd::vmin(a, b);
    b = simd::vmax(a, b);
    a = lo;
}

// Half-cleaners of index strides S, S/2, ..., 1 over v[0..Len) (pairs within aligned 2S
// rows). Every loop here is unrolled (at most 16 trips), so that v stays in registers: GCC
// does not peel nested loops of 64 trips by itself, and v then lives on the stack.
template <int S, int Len = 2 * S, class V>
inline void half_cleaners(V* v) {
    if constexpr (S >= 1) {
#pragma GCC unroll 16
        for (int a = 0; a < Len; ++a)
            if ((a & S) == 0) compare_exchange(v[a], v[a + S]);
        half_cleaners<S / 2, Len>(v);
    }
}

// The flip of two halves of H rows each (v[a] against v[2H - 1 - a]), then the half-cleaners
// of strides H/2, ..., 1 within each half.
template <int H, class V>
inline void flip_and_clean(V* v) {
#pragma GCC unroll 16
    for (int a = 0; a < H; ++a) compare_exchange(v[a], v[2 * H - 1 - a]);
    half_cleaners<H / 2>(v);
    half_cleaners<H / 2>(v + H);
}

// Rows base + (c << shift), c < 2^B, through the half-cleaners of bits [shift, shift + B).
// With shift = 0 on the last level, `sum` (if given) adds ranks [k0, k1) in rank order
// instead of storing them.
template <class T, int B>
inline void clean_pass(T* tile, int N, int n, int shift, int k0, int k1,
                       simd::VecD<T>* sum) {
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int G = 1 << B;
    const int span = G << shift, low = 1 << shift;
    for (int hi = 0; hi < N; hi += span)
        for (int lo = 0; lo < low; ++lo) {
            const int base = hi + lo;
            if (base >= n) break;  // every row of this group and the next ones is +inf
            V v[G];
#pragma GCC unroll 16
            for (int c = 0; c < G; ++c)
                v[c] = simd::load<V>(tile + std::size_t(base + (c << shift)) * W);
            half_cleaners<G / 2>(v);
            if (sum) {
#pragma GCC unroll 16
                for (int c = 0; c < G; ++c)
                    if (base + c >= k0 && base + c < k1) *sum += to_double<T>(v[c]);
            } else {
#pragma GCC unroll 16
                for (int c = 0; c < G; ++c)
                    simd::store(tile + std::size_t(base + (c << shift)) * W, v[c]);
            }
        }
}

// Bits [0, bits) of every pair of runs, from the highest, in passes of at most log2(G) bits.
template <class T, int G>
inline void clean_bits(T* tile, int N, int n, int bits, int k0, int k1, simd::VecD<T>* sum) {
    constexpr int LG = __builtin_ctz(unsigned(G));
    while (bits > 0) {
        const int b = bits < LG ? bits : LG;
        const int shift = bits - b;
        simd::VecD<T>* s = shift == 0 ? sum : nullptr;
        switch (b) {
            case 1: clean_pass<T, 1>(tile, N, n, shift, k0, k1, s); break;
            case 2: clean_pass<T, 2>(tile, N, n, shift, k0, k1, s); break;
            case 3: clean_pass<T, 3>(tile, N, n, shift, k0, k1, s); break;
            default: clean_pass<T, 4 < LG ? 4 : LG>(tile, N, n, shift, k0, k1, s); break;
        }
        bits = shift;
    }
}

// Sorts a tile of n rows (N a power of two >= 2G, rows [n, N) +inf) whose aligned groups of G
// rows are sorted already. With `sum`, the last pass adds ranks [k0, k1) into it in rank order
// and leaves the tile's last level unsorted in memory (only the sum is wanted).
// Its loops are mirrored by merge_tile_comparators (sorting_network.hpp): change both.
template <class T, int G>
inline void merge_sorted_groups(T* tile, int N, int n, int k0, int k1, simd::VecD<T>* sum) {
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int H = G / 2;
    for (int m = G; m < N; m *= 2) {
        const int e = m / H;  // the flip pass covers bits [log2 e, log2 m) of each half
        for (int r = 0; r < N && r + m < n; r += 2 * m)  // else the upper run is all +inf
            for (int i = 0; i < e; ++i) {
                if (r + m + (e - 1 - i) >= n) continue;  // its upper half is all +inf
                V v[G];
                std::size_t at[G];
                for (int a = 0; a < H; ++a) {
                    at[a] = std::size_t(r + i + a * e);
                    at[H + a] = std::size_t(r + m + (e - 1 - i) + a * e);
                }
#pragma GCC unroll 16
                for (int c = 0; c < G; ++c) v[c] = simd::load<V>(tile + at[c] * W);
                flip_and_clean<H>(v);
#pragma GCC unroll 16
                for (int c = 0; c < G; ++c) simd::store(tile + at[c] * W, v[c]);
            }
        clean_bits<T, G>(tile, N, n, __builtin_ctz(unsigned(e)), k0, k1,
                         2 * m == N ? sum : nullptr);
    }
}

}  // namespace hierfed::HIERFED_ISA
