// Python binding of the secure-aggregation masks kernel. Every argument is checked here (the
// kernel writes raw memory) and the GIL is released while it runs; hierfed.secagg validates
// user input, these checks are the last line of defence.

#include <cstdint>
#include <cstring>
#include <string>

#include "hierfed/dispatch.hpp"
#include "hierfed/masks.hpp"
#include "batch.hpp"
#include "hierfed/threads.hpp"

namespace py = pybind11;

namespace hierfed {
namespace baseline { extern const SecaggKernelSet secagg_set; }
#ifdef HIERFED_X86_DISPATCH
namespace avx2 { extern const SecaggKernelSet secagg_set; }
namespace avx512 { extern const SecaggKernelSet secagg_set; }
#endif

static const SecaggKernelSet& choose_secagg() {
    const char* name = kernels().name;
#ifdef HIERFED_X86_DISPATCH
    if (std::strcmp(name, "avx512") == 0) return avx512::secagg_set;
    if (std::strcmp(name, "avx2") == 0) return avx2::secagg_set;
#endif
    (void)name;
    return baseline::secagg_set;
}

const SecaggKernelSet& secagg_kernels() {
    static const SecaggKernelSet& chosen = choose_secagg();
    return chosen;
}

namespace {

constexpr std::size_t kMinParallelWords = std::size_t{1} << 15;  // key-words below: one thread

void apply_masks(const py::object& keys, const py::object& negate, const py::object& out,
                 int n_threads) {
    auto k = checked<std::uint32_t>(keys, "keys", false);
    auto s = checked<std::uint8_t>(negate, "negate", false);
    auto o = checked<std::uint32_t>(out, "out", true);
    const std::size_t m = static_cast<std::size_t>(s.shape(0));
    if (static_cast<std::size_t>(k.shape(0)) != 8 * m)
        throw py::value_error("keys must hold 8 uint32 words per entry of negate");
    if (n_threads < 1) throw py::value_error("n_threads must be >= 1");
    const std::size_t n = static_cast<std::size_t>(o.shape(0));
    if ((n + 15) / 16 > (std::size_t{1} << 32))
        throw py::value_error("out is longer than one keystream (2^36 words)");
    if (n == 0 || m == 0) return;
    const auto* kp = static_cast<const std::uint32_t*>(k.data());
    const auto* sp = static_cast<const std::uint8_t*>(s.data());
    auto* op = static_cast<std::uint32_t*>(o.mutable_data());
    const std::size_t sbs = (n + kSuperWords - 1) / kSuperWords;
    const int t = n * m < kMinParallelWords ? 1 : n_threads;
    py::gil_scoped_release release;
    parallel_for(sbs, t, [&](std::size_t a, std::size_t b, int) {
        secagg_kernels().apply_masks(kp, sp, m, op, n, a, b);
    });
}

}  // namespace

void bind_secagg(py::module_& m) {
    m.def("apply_masks", &apply_masks, py::arg("keys"), py::arg("negate"), py::arg("out"),
          py::arg("n_threads"),
          "Add (negate 0) or subtract (negate 1) the ChaCha20 keystream of each key (nonce 0, "
          "counter 0) into out, mod 2^32.");
}

}  // namespace hierfed
