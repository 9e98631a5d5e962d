#include "hierfed/dispatch.hpp"

#include <cstdlib>
#include <cstring>

namespace hierfed {
namespace baseline { extern const KernelSet kernel_set; }
#ifdef HIERFED_X86_DISPATCH
namespace avx2 { extern const KernelSet kernel_set; }
namespace avx512 { extern const KernelSet kernel_set; }
#endif

static const KernelSet& choose() {
    const char* want = std::getenv("HIERFED_SIMD");
    auto allowed = [&](const char* name) {
        if (!want || !*want) return true;
        if (std::strcmp(want, "baseline") == 0) return std::strcmp(name, "baseline") == 0;
        if (std::strcmp(want, "avx2") == 0) return std::strcmp(name, "avx512") != 0;
        return true;
    };
#ifdef HIERFED_X86_DISPATCH
    __builtin_cpu_init();
    if (allowed("avx512") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        return avx512::kernel_set;
    if (allowed("avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return avx2::kernel_set;
#endif
    (void)allowed;
    return baseline::kernel_set;
}

const KernelSet& kernels() {
    static const KernelSet& chosen = choose();
    return chosen;
}

}  // namespace hierfed
