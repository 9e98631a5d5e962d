// Secure-aggregation masks: one fused pass that adds and subtracts the ChaCha20 keystreams of
// many keys into a uint32 vector mod 2^32, without materialising any keystream.
//
// Mask j is the RFC 8439 keystream of key j with nonce 0 and counter 0, in RFC order (word
// 16 b + w is word w of block b). For each super-block of the output (16 blocks, 256 words)
// the keystreams of all keys are generated in registers and summed into a word-major
// accumulator in L1; the accumulator is then added to the output once.
// Bound in cpp/src/bind_secagg.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/masks.py, the numpy reference
// python/hierfed/_kernels/numpy/masks.py.
#pragma once
#include <cstddef>
#include <cstdint>

#include "chacha20.hpp"
#include "simd.hpp"

namespace hierfed {

// The masks kernel of one instruction-set build: super-blocks [sb0, sb1) of out[0, n).
struct SecaggKernelSet {
    void (*apply_masks)(const std::uint32_t* keys, const std::uint8_t* negate, std::size_t m,
                        std::uint32_t* out, std::size_t n, std::size_t sb0, std::size_t sb1);
};

// The build matching kernels().name (HIERFED_SIMD applies).
const SecaggKernelSet& secagg_kernels();

}  // namespace hierfed

namespace hierfed::HIERFED_ISA {

// out[i] += sum_j (negate[j] ? -1 : 1) * keystream_j[i]  (mod 2^32) over super-blocks
// [sb0, sb1); keys holds m keys of 8 little-endian words each.
inline void apply_masks_range(const std::uint32_t* keys, const std::uint8_t* negate,
                              std::size_t m, std::uint32_t* out, std::size_t n, std::size_t sb0,
                              std::size_t sb1) {
    alignas(64) std::uint32_t acc[kSuperWords];
    for (std::size_t sb = sb0; sb < sb1; ++sb) {
        VU32 a[16][kSuperBlock / kU32Lanes];
        VU32 zero = {};
        for (int w = 0; w < 16; ++w)
            for (int g = 0; g < kSuperBlock / kU32Lanes; ++g) a[w][g] = zero;
        const auto counter = static_cast<std::uint32_t>(sb * kSuperBlock);
        for (std::size_t j = 0; j < m; ++j) {
            ChaChaKey k{};
            for (int i = 0; i < 8; ++i) k.key[i] = keys[8 * j + i];
            const bool neg = negate[j] != 0;
            for (int g = 0; g < kSuperBlock / kU32Lanes; ++g) {
                VU32 x[16];
                chacha20_lanes(k, counter + static_cast<std::uint32_t>(g * kU32Lanes), x);
                if (neg) {
                    for (int w = 0; w < 16; ++w) a[w][g] -= x[w];
                } else {
                    for (int w = 0; w < 16; ++w) a[w][g] += x[w];
                }
            }
        }
        for (int w = 0; w < 16; ++w)
            for (int g = 0; g < kSuperBlock / kU32Lanes; ++g)
                simd::store(acc + w * kSuperBlock + g * kU32Lanes, a[w][g]);
        const std::size_t base = sb * kSuperWords;
        const std::size_t len = base + kSuperWords <= n ? kSuperWords : n - base;
        std::uint32_t* o = out + base;
        if (len == kSuperWords) {
            for (int b = 0; b < kSuperBlock; ++b)
                for (int w = 0; w < 16; ++w) o[16 * b + w] += acc[w * kSuperBlock + b];
        } else {
            for (std::size_t i = 0; i < len; ++i) o[i] += acc[(i % 16) * kSuperBlock + i / 16];
        }
    }
}

}  // namespace hierfed::HIERFED_ISA
