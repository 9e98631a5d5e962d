// Batcher's odd-even merge sorting network for any n, pruned to the output ranks needed.
// Twin: python/hierfed/_kernels/numba/sorting_network.py (the numba kernels' comparators).
#pragma once
#include <cstdint>
#include <vector>

namespace hierfed {

// Calls f(a, b) for each comparator (a < b: min to a, max to b) of Batcher's odd-even merge
// sort of `size` values (a power of two), in order, from the merge level `first_level` (a
// power of two; the levels below it sort aligned groups of that size). constexpr, so the
// kernels can unroll a group's network at compile time.
template <class F>
constexpr void batcher_comparators(int size, int first_level, F&& f) {
    for (int p = first_level; p < size; p <<= 1)
        for (int k = p; k >= 1; k >>= 1)
            for (int j = k % p; j + k < size; j += 2 * k)
                for (int i = 0; i < k && i + j + k < size; ++i)
                    if ((i + j) / (2 * p) == (i + j + k) / (2 * p)) f(i + j, i + j + k);
}

// Comparators (a, b) as a flat list; applying them in order sorts n values. Positions
// [lo, hi) are the ranks the caller reads afterwards; comparators that cannot influence them
// are dropped. The merge levels below `sorted_groups` are left out: the caller has already
// sorted every aligned group of that many values (a power of 2).
inline std::vector<std::int32_t> sorting_network(int n, int lo, int hi, int sorted_groups = 1) {
    int size = 1;
    while (size < n) size <<= 1;
    std::vector<std::int32_t> all;
    batcher_comparators(size, sorted_groups, [&](int a, int b) {
        if (b < n) {  // padding above n holds +inf: comparators touching it never swap
            all.push_back(a);
            all.push_back(b);
        }
    });
    std::vector<char> needed(n, 0);
    for (int r = lo; r < hi; ++r) needed[r] = 1;
    std::vector<std::int32_t> kept;
    for (std::size_t c = all.size(); c >= 2; c -= 2) {
        int a = all[c - 2], b = all[c - 1];
        if (needed[a] || needed[b]) {
            needed[a] = needed[b] = 1;
            kept.push_back(b);
            kept.push_back(a);
        }
    }
    return std::vector<std::int32_t>(kept.rbegin(), kept.rend());
}

// Comparators the register-blocked merge of tile_merge.hpp (merge_sorted_groups) runs on a
// tile of n rows whose aligned groups of `groups` rows are sorted: its passes, counted the
// way it walks them (groups wholly at or above n skipped; its loops, mirrored: change both).
// One walker with callbacks for both was tried: the kernel ran 10-20% slower. The kernels choose it over the
// flat network where that holds more than 0.55 as many comparators (two loads and two
// stores each against a fraction of one), by measurement.
inline long merge_tile_comparators(int n, int groups) {
    int size = 1;
    while (size < n) size <<= 1;
    const int half = groups / 2, lg = __builtin_ctz(unsigned(groups));
    const int lh = __builtin_ctz(unsigned(half));
    long count = 0;
    for (int m = groups; m < size; m *= 2) {
        const int e = m / half;
        for (int r = 0; r < size && r + m < n; r += 2 * m)
            for (int i = 0; i < e; ++i)
                if (r + m + (e - 1 - i) < n) count += half + 2 * (half / 2) * lh;
        for (int bits = __builtin_ctz(unsigned(e)); bits > 0;) {
            const int b = bits < lg ? bits : lg, shift = bits - b, span = (1 << b) << shift;
            for (int hi = 0; hi < size; hi += span)
                for (int lo = 0; lo < (1 << shift) && hi + lo < n; ++lo) count += (1 << b) / 2 * b;
            bits = shift;
        }
    }
    return count;
}

}  // namespace hierfed
