// Compiled once per instruction set (HIERFED_ISA names the namespace, the compile flags the
// instructions); exports that build's KernelSet.
#include "hierfed/coordinatewise.hpp"
#include "hierfed/distances.hpp"
#include "hierfed/mixing.hpp"
#include "hierfed/dispatch.hpp"

#define HIERFED_STR2(x) #x
#define HIERFED_STR(x) HIERFED_STR2(x)

namespace hierfed {
namespace HIERFED_ISA {
namespace {
bool coord_f32(const Segment<float>& s, std::size_t a, std::size_t b, const CoordParams& p) {
    return coordinatewise_range<float>(s, a, b, p);
}
bool coord_f64(const Segment<double>& s, std::size_t a, std::size_t b, const CoordParams& p) {
    return coordinatewise_range<double>(s, a, b, p);
}
}  // namespace
extern const KernelSet kernel_set{HIERFED_STR(HIERFED_ISA), kSortGroup,          coord_f32,
                                  coord_f64,                pairwise_chunk<float>,
                                  pairwise_chunk<double>,   sq_distance_to<float>,
                                  sq_distance_to<double>,   mix_range<float>,
                                  mix_range<double>,        bucket_range<float>,
                                  bucket_range<double>};
}  // namespace HIERFED_ISA
}  // namespace hierfed
