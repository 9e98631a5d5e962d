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
//   float32, each term added by one fused multiply-add (t = fma(d, d, t): one rounding), then
//   adds that to a float64 lane sum. d and eight fused adds bound the relative error by 10
//   units of float32 rounding (6e-7, every term being >= 0), while the float32 arithmetic
//   runs at twice the speed of float64.
// - float64 rows: each lane adds squared float64 differences by fused multiply-adds.
// - per chunk the 16 lane sums are folded by a fixed tree (8, 4, 2, 1); chunk values are
//   summed in order into one partial per unit, and unit partials in order into the result.
// The pairs are computed in register tiles of kTileA x kTileB rows (4 x 4 on AVX-512, 2 x 4
// on 16-register builds): each vector loaded serves kTileB or kTileA pairs, so the kernel runs
// at the speed of its arithmetic rather than of its loads; the second rows of a chunk go in
// blocks of 128 (512 KiB) that stay in L2 while the first rows pass (at n = 1000 the whole
// chunk, 4 MB, would stream from L3 for every tile). Builds without a fused
// multiply-add instruction (x86 baseline) compute it exactly in software: slower, same bits.
// Bound in cpp/src/bind_distances.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/distances.py, the numpy reference
// python/hierfed/_kernels/numpy/distances.py.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "simd.hpp"

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

namespace hierfed::HIERFED_ISA {

namespace dist {

constexpr int kLanes = 16;    // virtual lanes of the recipe
constexpr int kSteps = 8;     // float32 terms per lane before they go to float64
constexpr std::size_t kRun = kLanes * kSteps;
constexpr int kTileA = HIERFED_VECTOR_BYTES >= 64 ? 4 : 2;  // rows of a tile's first side
constexpr int kTileB = 4;                                   // rows of its second side
constexpr int kRowBlock = 4;  // callers split the rows at multiples of this (of kTileA too)

constexpr int kCachedRows = 128;  // second-side rows of a chunk kept in L2 (128 x 4 KiB)

template <int N>
using Doubles = typename simd::VectorOf<double, 8 * N>::type;

// Folds N float64 lane sums: for w in N/2, ..., 2, 1: a[l] += a[l + w] for l < w, each
// level one vector add of the halves (the same operations as the scalar loops).
template <int N>
inline double fold_halves(Doubles<N> x) {
    if constexpr (N == 1) {
        return x[0];
    } else {
        Doubles<N / 2> lo, hi;
        std::memcpy(&lo, &x, sizeof(lo));
        std::memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof(lo), sizeof(hi));
        return fold_halves<N / 2>(lo + hi);
    }
}

// The fold of the 16 lane sums stored from `lanes` on (any vectors holding lanes 0..15).
inline double fold16(const void* lanes) {
    Doubles<kLanes> x;
    std::memcpy(&x, lanes, sizeof(x));
    return fold_halves<kLanes>(x);
}

// a * b + c with one rounding, lane by lane.
template <class V>
inline V fused(V a, V b, V c) {
    constexpr bool f32 = sizeof(a[0]) == 4;
#if HIERFED_VECTOR_BYTES == 64 && defined(__AVX512F__)
    if constexpr (f32)
        return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
    else
        return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif HIERFED_VECTOR_BYTES == 32 && defined(__FMA__)
    if constexpr (f32)
        return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
    else
        return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
    (void)f32;
    V r;
    for (int l = 0; l < int(sizeof(V) / sizeof(a[0])); ++l) r[l] = std::fma(a[l], b[l], c[l]);
    return r;
#endif
}

template <class T>
constexpr int kVectors = kLanes / simd::Lanes<T>::value;  // vectors holding the 16 lanes

// float32: the RA x RB pairs over `runs` runs of 128 coordinates at `c`, each run's float32
// lane sums added to the float64 lane sums `acc`. The lanes of one vector are done a run at
// a time, so only RA x RB float32 sums are live.
template <int RA, int RB>
inline void runs_f32(const float* const* a, const float* const* b, std::size_t c,
                     std::size_t runs, simd::VecD<float> (&acc)[RA][RB][kVectors<float>]) {
    using V = simd::Vec<float>;
    constexpr int W = simd::Lanes<float>::value;
    for (std::size_t run = 0; run < runs; ++run, c += kRun)
        for (int v = 0; v < kVectors<float>; ++v) {
            V t[RA][RB] = {};
            for (int s = 0; s < kSteps; ++s) {
                const std::size_t at = c + std::size_t(s) * kLanes + std::size_t(v) * W;
                V xa[RA];
                for (int r = 0; r < RA; ++r) xa[r] = simd::load<V>(a[r] + at);
                for (int q = 0; q < RB; ++q) {
                    const V xb = simd::load<V>(b[q] + at);
                    for (int r = 0; r < RA; ++r) {
                        const V d = xa[r] - xb;
                        t[r][q] = fused(d, d, t[r][q]);
                    }
                }
            }
            for (int r = 0; r < RA; ++r)
                for (int q = 0; q < RB; ++q)
                    acc[r][q][v] += __builtin_convertvector(t[r][q], simd::VecD<float>);
        }
}

// float64: the RA x RB pairs over `steps` steps of 16 coordinates at `c`, into `acc`.
template <int RA, int RB>
inline void steps_f64(const double* const* a, const double* const* b, std::size_t c,
                      std::size_t steps, simd::Vec<double> (&acc)[RA][RB][kVectors<double>]) {
    using V = simd::Vec<double>;
    constexpr int W = simd::Lanes<double>::value;
    for (int v = 0; v < kVectors<double>; ++v)
        for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t at = c + s * kLanes + std::size_t(v) * W;
            V xa[RA];
            for (int r = 0; r < RA; ++r) xa[r] = simd::load<V>(a[r] + at);
            for (int q = 0; q < RB; ++q) {
                const V xb = simd::load<V>(b[q] + at);
                for (int r = 0; r < RA; ++r) {
                    const V d = xa[r] - xb;
                    acc[r][q][v] = fused(d, d, acc[r][q][v]);
                }
            }
        }
}

// Chunk values of the RA x RB pairs (a[r], b[q]): `full` coordinates at `c0` (a multiple of
// the step: 128 for float32, 16 for float64), then, when `ta` is given, one more step read at
// the start of the zero-padded copies ta[r], tb[q] of the rest of the chunk (a zero difference
// adds exactly nothing). Into out[r * RB + q].
template <class T, int RA, int RB>
inline void pair_tile(const T* const* a, const T* const* b, std::size_t c0, std::size_t full,
                      const T* const* ta, const T* const* tb, double* out) {
    constexpr bool f32 = std::is_same_v<T, float>;
    constexpr std::size_t step = f32 ? kRun : kLanes;
    using Acc = std::conditional_t<f32, simd::VecD<float>, simd::Vec<double>>;
    Acc acc[RA][RB][kVectors<T>] = {};
    auto body = [&](const T* const* pa, const T* const* pb, std::size_t c, std::size_t k) {
        if constexpr (f32)
            runs_f32<RA, RB>(pa, pb, c, k, acc);
        else
            steps_f64<RA, RB>(pa, pb, c, k, acc);
    };
    body(a, b, c0, full / step);
    if (ta) body(ta, tb, 0, 1);
    for (int r = 0; r < RA; ++r)
        for (int q = 0; q < RB; ++q) out[r * RB + q] = fold16(acc[r][q]);
}

}  // namespace dist

// Adds, for every pair i < j of the n rows with i in [i0, i1), the chunk value over [c0, c1)
// to partial[pair_index(i, j)], pairs indexed row-major over the upper triangle. i0 is a
// multiple of dist::kRowBlock. The second rows go in blocks of kCachedRows from i0, each block
// (512 KiB of the chunk) staying in L2 while every first row of the group passes it; in a
// block, tiles of kTileA x kTileB rows: rows I.. against rows J.. at multiples of kTileB from
// the block's start; pairs with j <= i, past the block or past the last row (read as copies of
// the last row) are computed and dropped. A pair's value does not depend on its tile.
template <class T>
inline void pairwise_chunk(const T* const* rows, int n, std::size_t c0, std::size_t c1, int i0,
                           int i1, double* partial) {
    constexpr int RA = dist::kTileA, RB = dist::kTileB;
    constexpr std::size_t step = std::is_same_v<T, float> ? dist::kRun : dist::kLanes;
    const std::size_t full = (c1 - c0) / step * step;
    const bool tail = c0 + full < c1;
    // The tile's zero-padded tails, on the stack: no heap memory touched (4 KiB at most).
    alignas(64) T pad_a[RA][step] = {}, pad_b[RB][step] = {};
    auto index = [n](int i, int j) {
        return std::size_t(i) * std::size_t(n) - std::size_t(i) * std::size_t(i + 1) / 2 +
               std::size_t(j - i - 1);
    };
    auto gather = [&](int first, int count, const T** out, T (*pad)[step], const T** tails) {
        for (int r = 0; r < count; ++r) {
            const int i = std::min(first + r, n - 1);
            out[r] = rows[i];
            if (tail) std::copy(rows[i] + c0 + full, rows[i] + c1, pad[r]);
            tails[r] = pad[r];
        }
    };
    double v[RA * RB];
    const int last = std::min(i1, n);
    for (int J0 = i0; J0 < n; J0 += dist::kCachedRows) {
        const int J1 = std::min(n, J0 + dist::kCachedRows);
        for (int I = i0; I < last && I < J1; I += RA) {
            const T *a[RA], *ta[RA];
            gather(I, RA, a, pad_a, ta);
            for (int J = J0 + std::max(0, I - J0) / RB * RB; J < J1; J += RB) {
                const T *b[RB], *tb[RB];
                gather(J, RB, b, pad_b, tb);
                dist::pair_tile<T, RA, RB>(a, b, c0, full, tail ? ta : nullptr, tb, v);
                for (int r = 0; r < RA && I + r < last; ++r)
                    for (int q = 0; q < RB; ++q) {
                        const int i = I + r, j = J + q;
                        if (j > i && j < J1) partial[index(i, j)] += v[r * RB + q];
                    }
            }
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
