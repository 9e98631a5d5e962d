// Distance kernels: exact pairwise squared distances, and distances from every row to a point.
//
// Never ||x||^2 + ||y||^2 - 2 x.y: the differences themselves are squared and summed, so
// updates that share a large offset keep their digits. Every floating-point operation and its
// order is fixed by a recipe that does not depend on the instruction set or the thread count
// (the numba twin follows it too), so all of them give the same bits:
//
// - 16 "virtual lanes": lane l takes coordinates l, l + 16, ... of a chunk; a vector build
//   holds them in 16 / (lanes per vector) registers.
// - float32 rows: per run of 128 coordinates, each lane sums 8 squared float32 differences in
//   float32 (multiply, then add: no fused multiply-add), then adds that to a float64 lane
//   sum. Eight float32 terms bound the relative error by about 10 units of float32 rounding
//   (6e-7), while the float32 arithmetic runs at twice the speed of float64.
// - float64 rows: each lane sums squared float64 differences in float64.
// - per chunk the 16 lane sums are folded by a fixed tree (8, 4, 2, 1); chunk values are
//   summed in order into one partial per unit, and unit partials in order into the result.
// Bound in cpp/src/bind_distances.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/distances.py, the numpy reference
// python/hierfed/_kernels/numpy/distances.py.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstring>

#include "simd.hpp"

namespace hierfed::HIERFED_ISA {

namespace dist {

constexpr int kLanes = 16;    // virtual lanes of the recipe
constexpr int kSteps = 8;     // float32 terms per lane before they go to float64
constexpr std::size_t kRun = kLanes * kSteps;

// Folds 16 float64 lane sums: for w in 8, 4, 2, 1: a[l] += a[l + w] for l < w.
inline double fold16(double* a) {
    for (int w = 8; w >= 1; w >>= 1)
        for (int l = 0; l < w; ++l) a[l] = a[l] + a[l + w];
    return a[0];
}

// The float32 part: RA x RB pairs of rows over one run of 128 coordinates at `c`, their
// 16-lane float32 sums added into the float64 lane sums `acc`.
template <int RA, int RB>
inline void run_f32(const float* const* a, const float* const* b, std::size_t c,
                    simd::VecD<float> (&acc)[RA][RB][kLanes / simd::Lanes<float>::value]) {
    using V = simd::Vec<float>;
    constexpr int W = simd::Lanes<float>::value;
    constexpr int NV = kLanes / W;
    V t[RA][RB][NV] = {};
    for (int s = 0; s < kSteps; ++s) {
        for (int v = 0; v < NV; ++v) {
            const std::size_t at = c + std::size_t(s) * kLanes + std::size_t(v) * W;
            V xa[RA], xb[RB];
            for (int r = 0; r < RA; ++r) xa[r] = simd::load<V>(a[r] + at);
            for (int q = 0; q < RB; ++q) xb[q] = simd::load<V>(b[q] + at);
            for (int r = 0; r < RA; ++r)
                for (int q = 0; q < RB; ++q) {
                    V d = xa[r] - xb[q];
                    t[r][q][v] += d * d;
                }
        }
    }
    for (int r = 0; r < RA; ++r)
        for (int q = 0; q < RB; ++q)
            for (int v = 0; v < NV; ++v)
                acc[r][q][v] += __builtin_convertvector(t[r][q][v], simd::VecD<float>);
}

// The float64 recipe over 16 coordinates at `c`.
template <int RA, int RB>
inline void step_f64(const double* const* a, const double* const* b, std::size_t c,
                     simd::Vec<double> (&acc)[RA][RB][kLanes / simd::Lanes<double>::value]) {
    using V = simd::Vec<double>;
    constexpr int W = simd::Lanes<double>::value;
    constexpr int NV = kLanes / W;
    for (int v = 0; v < NV; ++v) {
        V xa[RA], xb[RB];
        for (int r = 0; r < RA; ++r) xa[r] = simd::load<V>(a[r] + c + std::size_t(v) * W);
        for (int q = 0; q < RB; ++q) xb[q] = simd::load<V>(b[q] + c + std::size_t(v) * W);
        for (int r = 0; r < RA; ++r)
            for (int q = 0; q < RB; ++q) {
                V d = xa[r] - xb[q];
                acc[r][q][v] += d * d;
            }
    }
}

// Chunk values of the RA x RB pairs (a[r], b[q]) over coordinates [c0, c1) into
// out[r * RB + q]. The last partial run is read from zero-padded copies: a zero difference
// adds exactly nothing, so padding leaves every sum as the recipe defines it.
template <class T, int RA, int RB>
inline void pair_tile(const T* const* a, const T* const* b, std::size_t c0, std::size_t c1,
                      double* out) {
    constexpr std::size_t step = std::is_same_v<T, float> ? kRun : kLanes;
    constexpr int NV = kLanes / simd::Lanes<T>::value;
    using Acc = std::conditional_t<std::is_same_v<T, float>, simd::VecD<float>, simd::Vec<double>>;
    Acc acc[RA][RB][NV] = {};
    auto body = [&](const T* const* pa, const T* const* pb, std::size_t c) {
        if constexpr (std::is_same_v<T, float>)
            run_f32<RA, RB>(pa, pb, c, acc);
        else
            step_f64<RA, RB>(pa, pb, c, acc);
    };
    std::size_t c = c0;
    for (; c + step <= c1; c += step) body(a, b, c);
    if (c < c1) {
        alignas(64) T pad[RA + RB][step];
        const T* pa[RA];
        const T* pb[RB];
        for (int r = 0; r < RA + RB; ++r) {
            const T* src = r < RA ? a[r] : b[r - RA];
            std::fill(pad[r], pad[r] + step, T(0));
            std::copy(src + c, src + c1, pad[r]);
            (r < RA ? pa[r] : pb[r - RA]) = pad[r];
        }
        body(pa, pb, 0);
    }
    for (int r = 0; r < RA; ++r)
        for (int q = 0; q < RB; ++q) {
            alignas(64) double lanes[kLanes];
            std::memcpy(lanes, acc[r][q], sizeof(lanes));
            out[r * RB + q] = fold16(lanes);
        }
}

}  // namespace dist

// Adds, for every pair i < j of the n rows, the chunk value over [c0, c1) to
// partial[pair_index(i, j)], pairs indexed row-major over the upper triangle. Rows are taken
// two by two: the pair (2I, 2I+1) alone, and 2 x 2 tiles of blocks I < J (smaller at an odd
// end), so each vector loaded serves two pairs while the chunk of every row stays in cache.
template <class T>
inline void pairwise_chunk(const T* const* rows, int n, std::size_t c0, std::size_t c1,
                           double* partial) {
    auto index = [n](int i, int j) {
        return std::size_t(i) * std::size_t(n) - std::size_t(i) * std::size_t(i + 1) / 2 +
               std::size_t(j - i - 1);
    };
    double v[4];
    for (int i = 0; i < n; i += 2) {
        const int ra = std::min(2, n - i);
        if (ra == 2) {
            dist::pair_tile<T, 1, 1>(rows + i, rows + i + 1, c0, c1, v);
            partial[index(i, i + 1)] += v[0];
        }
        for (int j = i + 2; j < n; j += 2) {
            const int rb = std::min(2, n - j);
            if (ra == 2 && rb == 2) {
                dist::pair_tile<T, 2, 2>(rows + i, rows + j, c0, c1, v);
            } else if (ra == 2) {
                dist::pair_tile<T, 2, 1>(rows + i, rows + j, c0, c1, v);
            } else if (rb == 2) {
                dist::pair_tile<T, 1, 2>(rows + i, rows + j, c0, c1, v);
            } else {
                dist::pair_tile<T, 1, 1>(rows + i, rows + j, c0, c1, v);
            }
            for (int r = 0; r < ra; ++r)
                for (int q = 0; q < rb; ++q) partial[index(i + r, j + q)] += v[r * rb + q];
        }
    }
}

// Sum over [0, len) of (double(x[c]) - double(p[c]))^2 by the 16-lane recipe.
template <class T>
inline double sq_distance_to(const T* x, const T* p, std::size_t len) {
    using VD = simd::VecD<T>;
    using V = simd::Vec<T>;
    constexpr int W = simd::Lanes<T>::value;
    constexpr int NV = dist::kLanes / W;
    VD acc[NV] = {};
    std::size_t c = 0;
    for (; c + dist::kLanes <= len; c += dist::kLanes)
        for (int v = 0; v < NV; ++v) {
            VD d = __builtin_convertvector(simd::load<V>(x + c + std::size_t(v) * W), VD) -
                   __builtin_convertvector(simd::load<V>(p + c + std::size_t(v) * W), VD);
            acc[v] += d * d;
        }
    alignas(64) double lanes[dist::kLanes];
    std::memcpy(lanes, acc, sizeof(lanes));
    for (int l = 0; c < len; ++c, ++l) {
        const double d = double(x[c]) - double(p[c]);
        lanes[l] = lanes[l] + d * d;
    }
    return dist::fold16(lanes);
}

}  // namespace hierfed::HIERFED_ISA
