// Run-time choice of the instruction-set build of the kernels (AVX-512, AVX2, baseline).
#pragma once
#include <cstddef>
#include <cstdint>

#include "views.hpp"

namespace hierfed {

// The kernels of one instruction-set build, as plain function pointers.
struct KernelSet {
    const char* name;
    int sort_group;  // rows the unweighted tile kernels pre-sort per aligned group
    bool (*coordinatewise_f32)(const Segment<float>&, std::size_t, std::size_t,
                               const CoordParams&);
    bool (*coordinatewise_f64)(const Segment<double>&, std::size_t, std::size_t,
                               const CoordParams&);
    // Adds the chunk values over [c0, c1) of the pairs i < j with i in [i0, i1) to the packed
    // upper triangle: rows, n, c0, c1, i0, i1, partial.
    void (*pairwise_chunk_f32)(const float* const*, int, std::size_t, std::size_t, int, int,
                               double*);
    void (*pairwise_chunk_f64)(const double* const*, int, std::size_t, std::size_t, int, int,
                               double*);
    // Squared distance of one row to a point over `len` coordinates.
    double (*sq_distance_to_f32)(const float*, const float*, std::size_t);
    double (*sq_distance_to_f64)(const double*, const double*, std::size_t);
    // m weighted means of n rows over [c0, c1): rows, n, weights (m, n), their sums, m, outs.
    bool (*mix_f32)(const float* const*, int, const double*, const double*, int, float* const*,
                    std::size_t, std::size_t);
    bool (*mix_f64)(const double* const*, int, const double*, const double*, int,
                    double* const*, std::size_t, std::size_t);
    // Bucket means of n rows over [c0, c1): rows, order (n), n, bucket size s, outs.
    bool (*bucket_f32)(const float* const*, const std::int64_t*, int, int, float* const*,
                       std::size_t, std::size_t);
    bool (*bucket_f64)(const double* const*, const std::int64_t*, int, int, double* const*,
                       std::size_t, std::size_t);
};

// The best build this CPU runs; HIERFED_SIMD=avx512|avx2|baseline asks for a lower one.
const KernelSet& kernels();

}  // namespace hierfed
