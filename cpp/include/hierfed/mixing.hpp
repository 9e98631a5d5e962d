// Weighted means of the rows, many at once: out_o = sum_i w[o][i] x_i / sum_i w[o][i].
//
// Nearest-neighbour mixing replaces each of n updates by the mean of its n - f nearest: n
// weighted means over the same rows. Computed one at a time they read the input n times;
// here a vector of coordinates of every row is loaded once (widened to float64 into an L1
// tile) and all outputs are formed from it, four at a time in registers. Rows are added in
// index order, each as acc + w * x (no fused multiply-add): the numba twin gives the same bits.
// Bucket means (bucket_range) are the unweighted case with each row in one output: every row
// is read once and added to its bucket's float64 sum, in the order given.
// Bound in cpp/src/bind_mixing.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/mixing.py, the numpy reference
// python/hierfed/_kernels/numpy/mixing.py.
#pragma once
#include <algorithm>
#include <cmath>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "simd.hpp"

namespace hierfed::HIERFED_ISA {

namespace mixing {

// One native float64 vector of coordinates.
using VN = simd::Vec<double>;
constexpr int kLanes = simd::Lanes<double>::value;

// Outputs o0 .. o0 + R - 1 at coordinate `c` from the widened tile (R accumulators in
// registers, rows added in index order).
template <class T, int R>
inline void outputs(const VN* tile, int n, const double* w, const double* wsum, int o0,
                    T* const* outs, std::size_t c) {
    VN acc[R] = {};
    for (int i = 0; i < n; ++i) {
        const VN x = tile[i];
        for (int q = 0; q < R; ++q)
            acc[q] = acc[q] + simd::splat<VN>(w[std::size_t(o0 + q) * n + i]) * x;
    }
    for (int q = 0; q < R; ++q)
        simd::store(outs[o0 + q] + c, __builtin_convertvector(acc[q] / wsum[o0 + q], simd::VecOfDoubleLanes<T>));
}

}  // namespace mixing

// Outputs over [c0, c1) of one segment: rows[i] the n inputs, outs[o] the m outputs, w the
// (m, n) weights row-major and wsum their row sums. Returns true if an input is NaN or inf.
template <class T>
inline bool mix_range(const T* const* rows, int n, const double* w, const double* wsum, int m,
                      T* const* outs, std::size_t c0, std::size_t c1) {
    using P = simd::VecOfDoubleLanes<T>;
    constexpr int W = mixing::kLanes;
    constexpr int R = 8;
    std::vector<mixing::VN> tile(n);
    P probe = {};
    auto column = [&](const T* const* src, std::size_t c, T* const* dst) {
        for (int i = 0; i < n; ++i) {
            const P v = simd::load<P>(src[i] + c);
            probe += v * T(0);
            tile[i] = __builtin_convertvector(v, mixing::VN);
        }
        int o = 0;
        for (; o + R <= m; o += R) mixing::outputs<T, R>(tile.data(), n, w, wsum, o, dst, c);
        for (; o < m; ++o) mixing::outputs<T, 1>(tile.data(), n, w, wsum, o, dst, c);
    };
    std::size_t c = c0;
    for (; c + W <= c1; c += W) column(rows, c, outs);
    if (c < c1) {  // the tail, through zero-padded copies
        std::vector<T> in(std::size_t(n) * W, T(0)), out(std::size_t(m) * W);
        std::vector<const T*> src(n);
        std::vector<T*> dst(m);
        for (int i = 0; i < n; ++i) {
            std::copy(rows[i] + c, rows[i] + c1, in.data() + std::size_t(i) * W);
            src[i] = in.data() + std::size_t(i) * W;
        }
        for (int o = 0; o < m; ++o) dst[o] = out.data() + std::size_t(o) * W;
        column(src.data(), 0, dst.data());
        for (int o = 0; o < m; ++o) std::copy(dst[o], dst[o] + (c1 - c), outs[o] + c);
    }
    bool bad = false;
    for (int l = 0; l < W; ++l) bad |= probe[l] != probe[l];
    return bad;
}

// Bucket means over [c0, c1) of one segment: bucket b holds the rows order[b*s], ...,
// order[min(n, b*s + s) - 1], added in that order to a float64 sum that starts at 0 (the mixing
// kernel's bits with weights 1), then divided by their count and rounded to T. Each row is
// read once: per tile of coordinates, every bucket's rows in turn. Returns true if a sum is
// NaN or inf (a non-finite input, or float64 input whose sum overflows).
template <class T>
inline bool bucket_range(const T* const* rows, const std::int64_t* order, int n, int s,
                         T* const* outs, std::size_t c0, std::size_t c1) {
    constexpr std::size_t kTile = 1024;  // 8 KB of float64 sums, in L1
    alignas(64) double acc[kTile];
    unsigned bad = 0;
    for (std::size_t a = c0; a < c1; a += kTile) {
        const std::size_t len = std::min(kTile, c1 - a);
        for (int b = 0, p = 0; p < n; ++b, p += s) {
            const int e = std::min(n, p + s);
            for (std::size_t j = 0; j < len; ++j) acc[j] = 0.0;
            for (int q = p; q < e; ++q) {
                const T* x = rows[order[q]] + a;
                for (std::size_t j = 0; j < len; ++j) acc[j] = acc[j] + double(x[j]);
            }
            const double count = double(e - p);
            T* out = outs[b] + a;
            for (std::size_t j = 0; j < len; ++j) {
                bad |= !(std::fabs(acc[j]) <= DBL_MAX);
                out[j] = T(acc[j] / count);
            }
        }
    }
    return bad != 0;
}

}  // namespace hierfed::HIERFED_ISA
