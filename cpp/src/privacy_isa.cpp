// Compiled once per instruction set, like kernels_isa.cpp; exports that build's
// PrivacyKernelSet.
#include "hierfed/privacy_dispatch.hpp"

namespace hierfed {
namespace HIERFED_ISA {
extern const PrivacyKernelSet privacy_set{
    keystream_range,       noise_range<float>,       noise_range<double>,
    discrete_gaussian_range, block_sum_squares<float>, block_sum_squares<double>,
    scale_values<float>,   scale_values<double>};
}  // namespace HIERFED_ISA
}  // namespace hierfed
