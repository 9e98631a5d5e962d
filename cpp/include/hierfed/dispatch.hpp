// Run-time choice of the instruction-set build of the kernels (AVX-512, AVX2, baseline).
#pragma once
#include <cstddef>

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
};

// The best build this CPU runs; HIERFED_SIMD=avx512|avx2|baseline asks for a lower one.
const KernelSet& kernels();

}  // namespace hierfed
