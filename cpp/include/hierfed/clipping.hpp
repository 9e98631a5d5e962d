// Per-update L2 norms and clipping. The float64 sum of squares has one fixed order on every
// backend, instruction set and thread count, so norms (and clipped updates) agree bit for bit:
// - a row is cut into blocks of kNormBlock values; in a block, value j is squared (in
//   float64) and added to lane j % 32, lanes added in index order;
// - the 32 lanes are reduced by halves (lane l += lane l + h, h = 16, 8, 4, 2, 1);
// - block sums are added in order, then the sums of a row's segments (layers) in order.
// Bound in cpp/src/bind_privacy.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/clipping.py, the numpy reference
// python/hierfed/_kernels/numpy/clipping.py.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd.hpp"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace hierfed {
constexpr std::size_t kNormBlock = 8192;  // values per block of the canonical sum
constexpr int kNormLanes = 32;

// Relative slack of the clipping factor that makes every clipped row's exact norm at most the
// bound: the rounding of the sum of squares over `blocks` blocks and `segments` segments, the
// square root, the factor, and the output's own rounding (twin: clip_margin in
// python/hierfed/_kernels/numpy/clipping.py, which documents it).
inline double clip_margin(std::size_t blocks, std::size_t segments, bool f32) {
    const double unit_out = f32 ? 0x1p-24 : 0x1p-53;
    return unit_out + 2.0 * (kNormBlock / 32.0 + 16 + static_cast<double>(blocks) +
                             static_cast<double>(segments)) * 0x1p-53;
}

// The norm rows are clipped to: `bound` less what rounding d values to subnormals may add
// (twin: clip_target in python/hierfed/_kernels/numpy/clipping.py).
inline double clip_target(double bound, std::size_t d, bool f32) {
    const double smallest = f32 ? 0x1p-149 : 0x1p-1074;
    const double t = std::nextafter(bound - std::sqrt(static_cast<double>(d)) * smallest, 0.0);
    return t > 0.0 ? t : 0.0;
}
}  // namespace hierfed

namespace hierfed::HIERFED_ISA {

#if defined(__SSE2__)
// One aligned vector to memory, bypassing the caches.
template <class V>
inline void stream_store(float* p, V v) {
#if HIERFED_VECTOR_BYTES == 64
    _mm512_stream_ps(p, (__m512)v);
#elif HIERFED_VECTOR_BYTES == 32
    _mm256_stream_ps(p, (__m256)v);
#else
    _mm_stream_ps(p, (__m128)v);
#endif
}
template <class V>
inline void stream_store(double* p, V v) {
#if HIERFED_VECTOR_BYTES == 64
    _mm512_stream_pd(p, (__m512d)v);
#elif HIERFED_VECTOR_BYTES == 32
    _mm256_stream_pd(p, (__m256d)v);
#else
    _mm_stream_pd(p, (__m128d)v);
#endif
}
#endif

namespace clip_detail {
using VD = typename simd::VectorOf<double, HIERFED_VECTOR_BYTES>::type;
constexpr int kD = HIERFED_VECTOR_BYTES / 8;
constexpr int kAcc = kNormLanes / kD;

template <class T>
inline VD load_as_double(const T* p) {
    if constexpr (sizeof(T) == 8) {
        return simd::load<VD>(p);
    } else {
        typedef float VFh __attribute__((vector_size(HIERFED_VECTOR_BYTES / 2)));
        VFh h;
        std::memcpy(&h, p, sizeof h);
        return __builtin_convertvector(h, VD);
    }
}
}  // namespace clip_detail

// Canonical sum of squares of one block (len <= kNormBlock values).
template <class T>
double block_sum_squares(const T* x, std::size_t len) {
    using namespace clip_detail;
    VD acc[kAcc] = {};
    std::size_t j = 0;
    for (; j + kNormLanes <= len; j += kNormLanes) {
        for (int a = 0; a < kAcc; ++a) {
            VD v = load_as_double(x + j + a * kD);
            acc[a] += v * v;
        }
    }
    double lanes[kNormLanes];
    std::memcpy(lanes, acc, sizeof lanes);
    for (std::size_t l = 0; j + l < len; ++l) {
        const double v = static_cast<double>(x[j + l]);
        lanes[l] += v * v;
    }
    for (int h = kNormLanes / 2; h >= 1; h /= 2)
        for (int l = 0; l < h; ++l) lanes[l] = lanes[l] + lanes[l + h];
    return lanes[0];
}

// Values from which the output is written with non-temporal stores: a long row will not be
// read again soon, and streaming stores skip reading each output line before writing it.
constexpr std::size_t kStreamFrom = std::size_t{1} << 16;

// out[j] = x[j] * f, computed in double and rounded once (x and out may be the same array).
template <class T>
void scale_values(const T* x, T* out, std::size_t len, double f) {
    std::size_t j = 0;
#if defined(__SSE2__)
    if (len >= kStreamFrom) {
        typedef T VT __attribute__((vector_size(HIERFED_VECTOR_BYTES)));
        typedef double VW __attribute__((vector_size(HIERFED_VECTOR_BYTES * 8 / sizeof(T))));
        constexpr std::size_t W = HIERFED_VECTOR_BYTES / sizeof(T);
        for (; j < len && reinterpret_cast<std::uintptr_t>(out + j) % HIERFED_VECTOR_BYTES; ++j)
            out[j] = static_cast<T>(static_cast<double>(x[j]) * f);
        if (reinterpret_cast<std::uintptr_t>(out + j) % HIERFED_VECTOR_BYTES == 0) {
            VW fv = {};
            fv += f;
            for (; j + W <= len; j += W) {
                VT v;
                std::memcpy(&v, x + j, sizeof v);
                VT r = __builtin_convertvector(__builtin_convertvector(v, VW) * fv, VT);
                stream_store(out + j, r);
            }
            _mm_sfence();
        }
    }
#endif
    for (; j < len; ++j) out[j] = static_cast<T>(static_cast<double>(x[j]) * f);
}

}  // namespace hierfed::HIERFED_ISA
