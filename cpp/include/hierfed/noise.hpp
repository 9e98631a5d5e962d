// Noise from the ChaCha20 keystream: uniform, normal (Box-Muller) and Laplace transforms of
// one super-block, written so that the numba twin and the numpy reference, doing the same
// IEEE operations in the same order, give the same bits.
//
// A super-block (16 blocks) holds per block 8 "slots" of 64 bits: slot k of block j is
// words 2k (low half) and 2k + 1 (high half). Outputs of one super-block are slot-major:
//   uniform float64, Laplace: output 16 k + j from slot k of block j (128 outputs);
//   normal: pair p takes slots 2p (radius) and 2p + 1 (angle) of block j and gives outputs
//           16 (2p) + j and 16 (2p + 1) + j (128 outputs);
//   uniform float32: output 16 w + j from word w of block j (256 outputs).
// log, sin and cos are polynomials of basic operations (no libm), with -ffp-contract=off.
// Bound in cpp/src/bind_privacy.cpp. Twins (change the three together): the numba
// python/hierfed/_kernels/numba/noise.py, the numpy reference
// python/hierfed/_kernels/numpy/noise.py.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "chacha20.hpp"
#include "simd.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace hierfed {

enum class NoiseKind : int { Uniform = 0, Normal = 1, Laplace = 2 };

struct NoiseParams {
    NoiseKind kind;
    double loc;       // added to each draw (ignored when accumulating)
    double scale;     // draws are multiplied by it
    bool accumulate;  // out += scale * draw instead of out = loc + scale * draw
};

// Outputs per super-block.
inline std::size_t noise_per_superblock(NoiseKind kind, bool f32) {
    return (kind == NoiseKind::Uniform && f32) ? 256 : 128;
}

// Parameters of the exact discrete Gaussian sampler (Canonne, Kamath, Steinke 2020, Alg. 3):
// discrete Laplace of integer scale t, accepted with probability
// exp(-(|Y| alpha - beta)^2 / denom). ymax bounds |Y| so that |Y| alpha <= 2^62.
struct DiscreteGaussianParams {
    std::uint64_t t, alpha, beta, denom, ymax;
};

}  // namespace hierfed

namespace hierfed::HIERFED_ISA {

using VU64 = typename simd::VectorOf<std::uint64_t, HIERFED_VECTOR_BYTES>::type;
using VI64 = typename simd::VectorOf<std::int64_t, HIERFED_VECTOR_BYTES>::type;
using VF64 = typename simd::VectorOf<double, HIERFED_VECTOR_BYTES>::type;
using VU32h = typename simd::VectorOf<std::uint32_t, HIERFED_VECTOR_BYTES / 2>::type;
constexpr int kQLanes = HIERFED_VECTOR_BYTES / 8;

namespace noise_detail {

constexpr double kLn2 = 0.6931471805599453;
constexpr double kSqrtHalf = 0.7071067811865476;
constexpr double kTwoM53 = 1.0 / 9007199254740992.0;   // 2^-53
constexpr double kTwoM24 = 1.0 / 16777216.0;           // 2^-24
constexpr double kAngle = 0.7853981633974483 * kTwoM53;  // (pi / 4) 2^-53
constexpr std::uint64_t kMant53 = (std::uint64_t{1} << 53) - 1;

// 2 atanh series: 1 / (2j + 3), j = 0..9
constexpr double kLogC[10] = {1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9,  1.0 / 11,
                              1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};
// sin x = x + x z S(z): (-1)^(j+1) / (2j + 3)!, j = 0..7
constexpr double kSinC[8] = {-1.0 / 6.0,
                             1.0 / 120.0,
                             -1.0 / 5040.0,
                             1.0 / 362880.0,
                             -1.0 / 39916800.0,
                             1.0 / 6227020800.0,
                             -1.0 / 1307674368000.0,
                             1.0 / 355687428096000.0};
// cos x = 1 + z C(z): (-1)^(j+1) / (2j + 2)!, j = 0..8
constexpr double kCosC[9] = {-1.0 / 2.0,
                             1.0 / 24.0,
                             -1.0 / 720.0,
                             1.0 / 40320.0,
                             -1.0 / 3628800.0,
                             1.0 / 479001600.0,
                             -1.0 / 87178291200.0,
                             1.0 / 20922789888000.0,
                             -1.0 / 6402373705728000.0};

inline VF64 vsplat(double x) {
    VF64 v = {};
    return v + x;
}

inline VI64 isplat(std::int64_t x) {
    VI64 v = {};
    return v + x;
}

inline VF64 vsqrt(VF64 x) {
#if defined(__AVX512F__) && HIERFED_VECTOR_BYTES == 64
    return (VF64)_mm512_sqrt_pd((__m512d)x);
#elif defined(__AVX__) && HIERFED_VECTOR_BYTES == 32
    return (VF64)_mm256_sqrt_pd((__m256d)x);
#elif defined(__SSE2__) && HIERFED_VECTOR_BYTES == 16
    return (VF64)_mm_sqrt_pd((__m128d)x);
#else
    for (int l = 0; l < kQLanes; ++l) x[l] = __builtin_sqrt(x[l]);
    return x;
#endif
}

// ln(m 2^-53) for integers m in [1, 2^53] (as doubles): m = f 2^e with f in (sqrt(1/2),
// sqrt(2)], ln = (e - 53) ln 2 + 2 atanh((f - 1) / (f + 1)), the series to z^9.
inline VF64 log_unit(VF64 m) {
    VU64 bits = (VU64)m;
    VI64 e = (VI64)((bits >> 52) & 0x7ff) - 1022;
    VU64 fbits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FE0000000000000ull;
    VF64 fr = (VF64)fbits;  // in [0.5, 1)
    VI64 big = fr > vsplat(kSqrtHalf);
    VF64 f = big ? fr : fr + fr;
    e = big ? e : e - 1;
    VF64 k = __builtin_convertvector(e - 53, VF64);
    VF64 s = (f - 1.0) / (f + 1.0);
    VF64 z = s * s;
    VF64 p = vsplat(kLogC[9]);
    for (int j = 8; j >= 0; --j) p = p * z + kLogC[j];
    VF64 t = s + s;
    return k * kLn2 + (t + t * (z * p));
}

// Slot k of blocks j .. j + kQLanes - 1 of a word-major super-block.
inline VU64 slot(const std::uint32_t* words, int k, int j) {
    VU32h lo, hi;
    std::memcpy(&lo, words + (2 * k) * kSuperBlock + j, sizeof lo);
    std::memcpy(&hi, words + (2 * k + 1) * kSuperBlock + j, sizeof hi);
    return __builtin_convertvector(lo, VU64) | (__builtin_convertvector(hi, VU64) << 32);
}

inline VF64 to_double(VU64 x) {
    return __builtin_convertvector(x, VF64);
}

// Box-Muller: radius from slot a (u1 = ((a >> 11) + 1) 2^-53), angle from slot b (octant =
// top 3 bits, position in the octant = the next 53 bits; odd octants measured from their
// end, so sin and cos are only ever evaluated on [0, pi/4]).
inline void box_muller(VU64 a, VU64 b, VF64& z0, VF64& z1) {
    VF64 r = vsqrt(-2.0 * log_unit(to_double((a >> 11) + 1)));
    VU64 q = b >> 61;
    VU64 mt = (b >> 8) & kMant53;
    VI64 odd = (VI64)(q & 1) != isplat(0);
    VU64 mirrored = (std::uint64_t{1} << 53) - mt;
    mt = odd ? mirrored : mt;
    VF64 x = to_double(mt) * kAngle;
    VF64 z = x * x;
    VF64 ps = vsplat(kSinC[7]);
    for (int j = 6; j >= 0; --j) ps = ps * z + kSinC[j];
    VF64 sn = x + x * (z * ps);
    VF64 pc = vsplat(kCosC[8]);
    for (int j = 7; j >= 0; --j) pc = pc * z + kCosC[j];
    VF64 cs = 1.0 + z * pc;
    VF64 c0 = odd ? sn : cs;  // cos and sin of the angle within its quadrant
    VF64 s0 = odd ? cs : sn;
    VI64 quadrant = (VI64)(q >> 1);
    VI64 swap = (quadrant & 1) != isplat(0);
    VF64 c1 = swap ? s0 : c0;
    VF64 s1 = swap ? c0 : s0;
    VI64 neg_c = (quadrant == isplat(1)) | (quadrant == isplat(2));
    VI64 neg_s = quadrant >= isplat(2);
    z0 = r * (neg_c ? -c1 : c1);
    z1 = r * (neg_s ? -s1 : s1);
}

// Laplace(0, 1): sign from the top bit, magnitude -ln(u), u = ((a mod 2^63) >> 10) + 1) 2^-53.
inline VF64 laplace(VU64 a) {
    VF64 e = -log_unit(to_double(((a & 0x7FFFFFFFFFFFFFFFull) >> 10) + 1));
    VI64 neg = (VI64)(a >> 63) != isplat(0);
    return neg ? -e : e;
}

}  // namespace noise_detail

// Draws of one super-block into z (double), in output order. Returns their count.
inline std::size_t superblock_draws(const std::uint32_t* words, NoiseKind kind, bool f32,
                                    double* z) {
    using namespace noise_detail;
    if (kind == NoiseKind::Uniform && f32) {
        for (int i = 0; i < kSuperWords; ++i) z[i] = double(words[i] >> 8) * kTwoM24;
        return kSuperWords;
    }
    for (int j = 0; j < kSuperBlock; j += kQLanes) {
        if (kind == NoiseKind::Normal) {
            for (int p = 0; p < 4; ++p) {
                VF64 z0, z1;
                box_muller(slot(words, 2 * p, j), slot(words, 2 * p + 1, j), z0, z1);
                simd::store(z + (2 * p) * kSuperBlock + j, z0);
                simd::store(z + (2 * p + 1) * kSuperBlock + j, z1);
            }
        } else {
            for (int k = 0; k < 8; ++k) {
                VU64 a = slot(words, k, j);
                VF64 v = kind == NoiseKind::Laplace ? laplace(a) : to_double(a >> 11) * kTwoM53;
                simd::store(z + k * kSuperBlock + j, v);
            }
        }
    }
    return 8 * kSuperBlock;
}

// Super-blocks [sb0, sb1) of the draws, written to out[0, n) as loc + scale * draw (or
// out += scale * draw), computed in double and rounded once to T.
template <class T>
void noise_range(const ChaChaKey& key, std::uint32_t counter, T* out, std::size_t n,
                 const NoiseParams& p, std::size_t sb0, std::size_t sb1) {
    alignas(64) std::uint32_t words[kSuperWords];
    alignas(64) double z[kSuperWords];
    const std::size_t per = noise_per_superblock(p.kind, sizeof(T) == 4);
    for (std::size_t sb = sb0; sb < sb1; ++sb) {
        chacha20_superblock(key, counter + static_cast<std::uint32_t>(sb * kSuperBlock), words);
        superblock_draws(words, p.kind, sizeof(T) == 4, z);
        const std::size_t base = sb * per;
        const std::size_t m = base + per <= n ? per : n - base;
        T* o = out + base;
        const double loc = p.loc, scale = p.scale;
        if (p.accumulate) {
            for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<T>(double(o[i]) + scale * z[i]);
        } else {
            for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<T>(loc + scale * z[i]);
        }
    }
}

// Super-blocks [sb0, sb1) of the keystream in RFC order into out[0, n).
inline void keystream_range(const ChaChaKey& key, std::uint32_t counter, std::uint32_t* out,
                            std::size_t n, std::size_t sb0, std::size_t sb1) {
    alignas(64) std::uint32_t words[kSuperWords];
    for (std::size_t sb = sb0; sb < sb1; ++sb) {
        chacha20_superblock(key, counter + static_cast<std::uint32_t>(sb * kSuperBlock), words);
        const std::size_t base = sb * kSuperWords;
        const std::size_t m = base + kSuperWords <= n ? kSuperWords : n - base;
        std::uint32_t* o = out + base;
        if (m == kSuperWords) {  // a 16 x 16 transpose
            for (int j = 0; j < kSuperBlock; ++j)
                for (int w = 0; w < 16; ++w) o[16 * j + w] = words[w * kSuperBlock + j];
        } else {
            for (std::size_t i = 0; i < m; ++i) o[i] = words[(i % 16) * kSuperBlock + i / 16];
        }
    }
}

// ---- exact discrete Gaussian ------------------------------------------------------------

// The keystream of one chunk (its own nonce), read word by word in RFC order.
class WordSource {
public:
    WordSource(const ChaChaKey& key, std::uint64_t chunk) : key_(key) {
        key_.nonce[0] = static_cast<std::uint32_t>(chunk);
        key_.nonce[1] = static_cast<std::uint32_t>(chunk >> 32);
        key_.nonce[2] = 0;
    }
    std::uint32_t next() {
        if (pos_ == kSuperWords) refill();
        const int q = pos_++;
        return words_[(q % 16) * kSuperBlock + q / 16];
    }
    // b <= 16 bits from a 32-bit reservoir, low bits first; a reservoir with fewer than b
    // bits left is dropped and a fresh word loaded.
    std::uint32_t bits(int b) {
        if (avail_ < b) {
            reservoir_ = next();
            avail_ = 32;
        }
        const std::uint32_t v = reservoir_ & ((std::uint32_t{1} << b) - 1);
        reservoir_ >>= b;
        avail_ -= b;
        return v;
    }

private:
    void refill() {
        if (blocks_ > (std::uint64_t{1} << 32) - kSuperBlock)
            throw std::runtime_error("discrete_gaussian: a chunk exhausted its 2^32 blocks");
        chacha20_superblock(key_, static_cast<std::uint32_t>(blocks_), words_);
        blocks_ += kSuperBlock;
        pos_ = 0;
    }
    ChaChaKey key_;
    alignas(64) std::uint32_t words_[kSuperWords];
    int pos_ = kSuperWords;
    std::uint64_t blocks_ = 0;
    std::uint32_t reservoir_ = 0;
    int avail_ = 0;
};

namespace dg_detail {

// Uniform integer in [0, m), 1 <= m <= 2^63, by rejection of masked draws: up to 16 bits
// from the reservoir, up to 32 bits from one word, more from two (high word first).
inline std::uint64_t uniform_below(WordSource& src, std::uint64_t m) {
    if (m == 1) return 0;
    const int bits = 64 - __builtin_clzll(m - 1);
    if (bits <= 16) {
        for (;;) {
            const std::uint64_t v = src.bits(bits);
            if (v < m) return v;
        }
    }
    if (bits <= 32) {
        const std::uint32_t mask = bits == 32 ? ~std::uint32_t{0} : (std::uint32_t{1} << bits) - 1;
        for (;;) {
            const std::uint64_t v = src.next() & mask;
            if (v < m) return v;
        }
    }
    const std::uint64_t mask_hi = (std::uint64_t{1} << (bits - 32)) - 1;
    for (;;) {
        const std::uint64_t hi = src.next() & mask_hi;
        const std::uint64_t v = (hi << 32) | src.next();
        if (v < m) return v;
    }
}

// Bernoulli(num / den), 0 <= num, 1 <= den; num >= den is certain, num = 0 impossible.
// Beyond 32 bits the high word of the uniform draw decides alone unless it ties with the
// high word of num or den.
inline bool bernoulli(WordSource& src, std::uint64_t num, std::uint64_t den) {
    if (num == 0) return false;
    if (num >= den) return true;
    if (den <= (std::uint64_t{1} << 32)) return uniform_below(src, den) < num;
    const int bits = 64 - __builtin_clzll(den - 1);
    const std::uint64_t mask_hi = (std::uint64_t{1} << (bits - 32)) - 1;
    const std::uint64_t den_hi = den >> 32, num_hi = num >> 32;
    for (;;) {
        const std::uint64_t hi = src.next() & mask_hi;
        if (hi > den_hi) continue;
        if (hi < num_hi) return true;
        if (hi > num_hi && hi < den_hi) return false;
        const std::uint64_t v = (hi << 32) | src.next();
        if (v >= den) continue;
        return v < num;
    }
}

// Bernoulli(exp(-num / den)) for num <= den (CKS Algorithm 1): K counts successes of
// Bernoulli(gamma / K), drawn as Bernoulli(1 / K) and then Bernoulli(gamma).
inline bool bernoulli_exp_le1(WordSource& src, std::uint64_t num, std::uint64_t den) {
    std::uint64_t k = 1;
    for (;;) {
        if (uniform_below(src, k) != 0 || !bernoulli(src, num, den)) break;
        ++k;
    }
    return (k & 1) == 1;
}

// Bernoulli(exp(-(g + r / den))): g Bernoulli(exp(-1)) that must all succeed, then the rest.
inline bool bernoulli_exp(WordSource& src, std::uint64_t g, std::uint64_t r, std::uint64_t den) {
    for (std::uint64_t i = 0; i < g; ++i)
        if (!bernoulli_exp_le1(src, 1, 1)) return false;
    return bernoulli_exp_le1(src, r, den);
}

constexpr std::uint64_t kCap = std::uint64_t{1} << 62;

inline std::int64_t discrete_gaussian(WordSource& src, const DiscreteGaussianParams& p) {
    const std::uint64_t vmax = p.ymax / p.t;
    for (;;) {
        const std::uint64_t u = uniform_below(src, p.t);
        if (!bernoulli_exp_le1(src, u, p.t)) continue;
        std::uint64_t v = 0;
        bool too_far = false;
        while (bernoulli_exp_le1(src, 1, 1)) {
            if (++v > vmax) {
                too_far = true;
                break;
            }
        }
        if (too_far) continue;
        const std::uint64_t x = u + p.t * v;
        const bool negative = src.bits(1) != 0;
        if (negative && x == 0) continue;
        if (x > p.ymax) continue;
        const __int128 a = static_cast<__int128>(x) * p.alpha - static_cast<__int128>(p.beta);
        const unsigned __int128 a2 = static_cast<unsigned __int128>(a * a);
        const unsigned __int128 g = a2 / p.denom;
        const std::uint64_t r = static_cast<std::uint64_t>(a2 % p.denom);
        const std::uint64_t gc = g > kCap ? kCap : static_cast<std::uint64_t>(g);
        if (!bernoulli_exp(src, gc, r, p.denom)) continue;
        return negative ? -static_cast<std::int64_t>(x) : static_cast<std::int64_t>(x);
    }
}

}  // namespace dg_detail

// Chunks [c0, c1) of `chunk` samples each: chunk c draws from the keystream of `key` with
// nonce (c mod 2^32, c >> 32, 0), so every chunk is reproducible on its own.
inline void discrete_gaussian_range(const ChaChaKey& key, std::int64_t* out, std::size_t n,
                                    const DiscreteGaussianParams& p, std::size_t chunk,
                                    std::size_t c0, std::size_t c1) {
    for (std::size_t c = c0; c < c1; ++c) {
        WordSource src(key, c);
        const std::size_t end = (c + 1) * chunk < n ? (c + 1) * chunk : n;
        for (std::size_t i = c * chunk; i < end; ++i) out[i] = dg_detail::discrete_gaussian(src, p);
    }
}

}  // namespace hierfed::HIERFED_ISA
