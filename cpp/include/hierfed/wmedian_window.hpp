// The weighted median's rounding margin and the ranks where it can lie, from the weights alone
// (no values): the value network is pruned to these ranks and the binary search starts on
// them (coordinatewise.hpp, weighted_median_search). Shared by the binding, which builds the
// network, and the kernels (coordinatewise_wmedian.hpp).
#pragma once
#include <algorithm>
#include <vector>

namespace hierfed {

// Sums of the weights in any two orders differ from the reference's rank-order sums by
// rounding only; past this margin of D = 2 S - W the sign is the reference's.
inline double weighted_median_margin(int n, double total) {
    return 8.0 * double(n + 2) * 0x1p-53 * total;
}

// [low, high]: every value below rank `low` has at most `low` rows at or below it, whose
// weights (at most the `low` largest) make D < -2 margins; rank `high`'s value at least
// high + 1 rows (at least the high + 1 smallest weights), D > 2 margins (high = n - 1 when no
// smaller rank is sure). Ties only add rows at or below a value, so both hold for any values;
// the extra margin covers the rounding of these sums.
struct WeightedMedianWindow {
    int low = 0, high = 0;
};

inline WeightedMedianWindow weighted_median_window(const double* w, int n, double total) {
    std::vector<double> s(w, w + n);
    std::sort(s.begin(), s.end());
    const double m = 2.0 * weighted_median_margin(n, total);
    WeightedMedianWindow r{0, n - 1};
    double top = 0.0;  // the r.low largest weights
    while (r.low < n && 2.0 * (top + s[std::size_t(n - 1 - r.low)]) - total < -m)
        top += s[std::size_t(n - 1 - r.low++)];
    double bottom = 0.0;  // the q + 1 smallest
    for (int q = 0; q < n - 1; ++q) {
        bottom += s[std::size_t(q)];
        if (2.0 * bottom - total > m) {
            r.high = q;
            break;
        }
    }
    return r;
}

}  // namespace hierfed
