// Compiled once per instruction set, like privacy_isa.cpp; exports that build's
// SecaggKernelSet.
#include "hierfed/masks.hpp"

namespace hierfed {
namespace HIERFED_ISA {
extern const SecaggKernelSet secagg_set{apply_masks_range};
}  // namespace HIERFED_ISA
}  // namespace hierfed
