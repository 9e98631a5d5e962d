// Views of the updates as the kernels see them: per segment, n row pointers and one output.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hierfed {

// One segment of the updates (the whole update, or one layer of a per-layer model):
// rows[i] points at update i's `len` contiguous values; `out` receives `len` results.
template <class T>
struct Segment {
    const T* const* rows;
    T* out;
    std::size_t len;
};

// AroundMedian: Bulyan's last step, the (weighted) mean of the k values closest to the median.
enum class CoordOp : int { Mean = 0, TrimmedMean = 1, Median = 2, AroundMedian = 3 };

// Everything a coordinate-wise kernel needs besides the segment.
struct CoordParams {
    CoordOp op;
    int n;                        // number of updates
    int k;                        // values trimmed at each end (TrimmedMean) or kept (AroundMedian)
    const double* weights;        // n weights or nullptr
    double weight_sum;            // sum of weights (or n)
    const std::int32_t* network;  // sorting-network comparators as (a, b) pairs, a < b
    int network_len;              // number of comparators
    // Weighted rules: the stable (value, row index) network, where the weighted trimmed mean
    // takes its thresholds from `network` (values only) and keeps this one as its fallback.
    const std::int32_t* pair_network = nullptr;
    int pair_network_len = 0;
    // Weighted median: `network` sorts values only; the pair network is the fallback.
    bool value_network_first = false;
    // ... whose binary search starts on ranks [wm_low, wm_high] (weighted_median_window), to
    // which `network` is pruned.
    int wm_low = 0, wm_high = 0;
    // Value tiles: merge the sorted groups by register-blocked bitonic passes
    // (tile_merge.hpp) instead of applying `network`, and the tile's row count for that
    // (the next power of two of n; rows from n up hold +inf).
    bool merge_tile = false;
    int merge_rows = 0;
};

}  // namespace hierfed
