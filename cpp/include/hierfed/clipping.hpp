// Per-update L2 norms and clipping. The float64 sum of squares has one fixed order on every
// backend, instruction set and thread count, so norms (and clipped updates) agree bit for bit:
// - a row is cut into blocks of kNormBlock values; in a block, value j is squared (in
//   float64) and added to lane j % 32, lanes added in index order;
// - the 32 lanes are reduced by halves (lane l += lane l + h, h = 16, 8, 4, 2, 1);
// - block sums are added in order, then the sums of a row's segments (layers) in order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd.hpp"

namespace hierfed {
constexpr std::size_t kNormBlock = 8192;  // values per block of the canonical sum
constexpr int kNormLanes = 32;
}  // namespace hierfed

namespace hierfed::HIERFED_ISA {

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

// out[j] = x[j] * f, computed in double and rounded once (x and out may be the same array).
template <class T>
void scale_values(const T* x, T* out, std::size_t len, double f) {
    for (std::size_t j = 0; j < len; ++j) out[j] = static_cast<T>(static_cast<double>(x[j]) * f);
}

}  // namespace hierfed::HIERFED_ISA
