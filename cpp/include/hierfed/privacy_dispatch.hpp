// Run-time choice of the instruction-set build of the privacy kernels (the same build as the
// coordinate-wise kernels: see dispatch.hpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "chacha20.hpp"
#include "clipping.hpp"
#include "noise.hpp"

namespace hierfed {

// The privacy kernels of one instruction-set build. Ranges are in super-blocks (noise,
// keystream), chunks (discrete Gaussian) or values (norms, scaling).
struct PrivacyKernelSet {
    void (*keystream)(const ChaChaKey&, std::uint32_t, std::uint32_t*, std::size_t,
                      std::size_t, std::size_t);
    void (*noise_f32)(const ChaChaKey&, std::uint32_t, float*, std::size_t, const NoiseParams&,
                      std::size_t, std::size_t);
    void (*noise_f64)(const ChaChaKey&, std::uint32_t, double*, std::size_t,
                      const NoiseParams&, std::size_t, std::size_t);
    void (*discrete_gaussian)(const ChaChaKey&, std::int64_t*, std::size_t,
                              const DiscreteGaussianParams&, std::size_t, std::size_t,
                              std::size_t);
    double (*sum_squares_f32)(const float*, std::size_t);
    double (*sum_squares_f64)(const double*, std::size_t);
    void (*scale_f32)(const float*, float*, std::size_t, double);
    void (*scale_f64)(const double*, double*, std::size_t, double);
};

// The build matching kernels().name (HIERFED_SIMD applies).
const PrivacyKernelSet& privacy_kernels();

}  // namespace hierfed
