#include <cstring>

#include "hierfed/dispatch.hpp"
#include "hierfed/privacy_dispatch.hpp"

namespace hierfed {
namespace baseline { extern const PrivacyKernelSet privacy_set; }
#ifdef HIERFED_X86_DISPATCH
namespace avx2 { extern const PrivacyKernelSet privacy_set; }
namespace avx512 { extern const PrivacyKernelSet privacy_set; }
#endif

static const PrivacyKernelSet& choose_privacy() {
    const char* name = kernels().name;
#ifdef HIERFED_X86_DISPATCH
    if (std::strcmp(name, "avx512") == 0) return avx512::privacy_set;
    if (std::strcmp(name, "avx2") == 0) return avx2::privacy_set;
#endif
    (void)name;
    return baseline::privacy_set;
}

const PrivacyKernelSet& privacy_kernels() {
    static const PrivacyKernelSet& chosen = choose_privacy();
    return chosen;
}

}  // namespace hierfed
