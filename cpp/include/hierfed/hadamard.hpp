// The unnormalised Walsh-Hadamard transform in place (Sylvester order: H H = n I), the
// rotation of the distributed discrete Gaussian (hierfed.privacy.distributed).
//
// Twins: python/hierfed/_kernels/numba/hadamard.py and the numpy reference
// python/hierfed/_kernels/numpy/hadamard.py; bound in cpp/src/bind_privacy.cpp. Every stage
// h = 1, 2, 4, ... replaces (x[j], x[j + h]) by (x[j] + x[j + h], x[j] - x[j + h]) in each block
// of 2h: each value is one add or subtract of the previous stage's, so any order of the
// butterflies within a stage gives the same bits (on every backend and thread count).
// Stages below TILE run tile by tile (in L1); the larger ones sweep the vector, their
// independent butterflies split among threads.
#pragma once
#include <algorithm>
#include <cstddef>

#include "hierfed/threads.hpp"

namespace hierfed {

inline void hadamard_butterflies(double* lo, double* hi, std::size_t count) {
    for (std::size_t j = 0; j < count; ++j) {
        const double a = lo[j], b = hi[j];
        lo[j] = a + b;
        hi[j] = a - b;
    }
}

// n must be a power of two (checked by the binding).
inline void walsh_hadamard(double* x, std::size_t n, int n_threads) {
    constexpr std::size_t TILE = 4096;          // 32 KiB of doubles
    constexpr std::size_t PARALLEL = 1u << 16;  // smaller vectors: threads cost more than they save
    const std::size_t tile = std::min(n, TILE);
    const int threads = n >= PARALLEL ? n_threads : 1;
    parallel_for(n / tile, threads, [&](std::size_t a, std::size_t b, int) {
        for (std::size_t t = a; t < b; ++t) {
            double* p = x + t * tile;
            for (std::size_t h = 1; h < tile; h *= 2)
                for (std::size_t i = 0; i < tile; i += 2 * h) hadamard_butterflies(p + i, p + i + h, h);
        }
    });
    for (std::size_t h = tile; h < n; h *= 2) {
        const std::size_t per_block = h / tile;  // units of `tile` butterflies per block of 2h
        parallel_for((n / (2 * h)) * per_block, threads, [&](std::size_t a, std::size_t b, int) {
            for (std::size_t u = a; u < b; ++u) {
                double* lo = x + (u / per_block) * 2 * h + (u % per_block) * tile;
                hadamard_butterflies(lo, lo + h, tile);
            }
        });
    }
}

}  // namespace hierfed
