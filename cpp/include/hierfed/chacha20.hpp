// ChaCha20 block function (RFC 8439, section 2.3): 20 rounds over a 16-word state made of
// four constants, the 256-bit key, a 32-bit block counter and the 96-bit nonce; the block is
// the final state plus the initial one. The vector form runs one block per SIMD lane.
//
// The kernels work in super-blocks of 16 consecutive blocks (256 words), stored word-major:
// words[w * 16 + j] is word w of block j. The keystream in RFC order is word w of block j at
// position 16 * j + w.
// Bound in cpp/src/bind_privacy.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/chacha20.py, the numpy reference
// python/hierfed/_kernels/numpy/chacha20.py.
#pragma once
#include <cstddef>
#include <cstdint>

#include "simd.hpp"

namespace hierfed {

struct ChaChaKey {
    std::uint32_t key[8];    // the 32-byte key as little-endian words
    std::uint32_t nonce[3];  // the 12-byte nonce as little-endian words
};

constexpr int kSuperBlock = 16;                 // blocks per super-block
constexpr int kSuperWords = 16 * kSuperBlock;  // words per super-block

}  // namespace hierfed

namespace hierfed::HIERFED_ISA {

using VU32 = typename simd::VectorOf<std::uint32_t, HIERFED_VECTOR_BYTES>::type;
constexpr int kU32Lanes = HIERFED_VECTOR_BYTES / 4;

template <int N>
inline VU32 rotl(VU32 x) {
    return (x << N) | (x >> (32 - N));
}

inline void quarter_round(VU32& a, VU32& b, VU32& c, VU32& d) {
    a += b;
    d = rotl<16>(d ^ a);
    c += d;
    b = rotl<12>(b ^ c);
    a += b;
    d = rotl<8>(d ^ a);
    c += d;
    b = rotl<7>(b ^ c);
}

// x[w][l] = word w of block counter + l, for the kU32Lanes lanes (the counter wraps mod 2^32;
// callers never output a block past 2^32 - 1).
inline void chacha20_lanes(const ChaChaKey& k, std::uint32_t counter, VU32 x[16]) {
    static constexpr std::uint32_t sigma[4] = {0x61707865u, 0x3320646eu, 0x79622d32u,
                                               0x6b206574u};
    VU32 init[16];
    VU32 zero = {};
    for (int i = 0; i < 4; ++i) init[i] = zero + sigma[i];
    for (int i = 0; i < 8; ++i) init[4 + i] = zero + k.key[i];
    VU32 lane;
    for (int l = 0; l < kU32Lanes; ++l) lane[l] = static_cast<std::uint32_t>(l);
    init[12] = (zero + counter) + lane;
    for (int i = 0; i < 3; ++i) init[13 + i] = zero + k.nonce[i];
    for (int i = 0; i < 16; ++i) x[i] = init[i];
    for (int round = 0; round < 10; ++round) {
        quarter_round(x[0], x[4], x[8], x[12]);
        quarter_round(x[1], x[5], x[9], x[13]);
        quarter_round(x[2], x[6], x[10], x[14]);
        quarter_round(x[3], x[7], x[11], x[15]);
        quarter_round(x[0], x[5], x[10], x[15]);
        quarter_round(x[1], x[6], x[11], x[12]);
        quarter_round(x[2], x[7], x[8], x[13]);
        quarter_round(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; ++i) x[i] += init[i];
}

// The 16 blocks from `counter`, word-major: words[w * 16 + j] = word w of block counter + j.
inline void chacha20_superblock(const ChaChaKey& k, std::uint32_t counter,
                                std::uint32_t* words) {
    for (int g = 0; g < kSuperBlock; g += kU32Lanes) {
        VU32 x[16];
        chacha20_lanes(k, counter + static_cast<std::uint32_t>(g), x);
        for (int w = 0; w < 16; ++w) simd::store(words + w * kSuperBlock + g, x[w]);
    }
}

}  // namespace hierfed::HIERFED_ISA
