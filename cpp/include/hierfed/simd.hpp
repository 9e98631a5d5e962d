// Portable SIMD vectors (GCC/Clang vector extensions). The vector width comes from the
// translation unit: HIERFED_VECTOR_BYTES is 64 (AVX-512), 32 (AVX2) or 16 (baseline), and the
// compiler flags of that unit decide which instructions the same source becomes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifndef HIERFED_VECTOR_BYTES
#define HIERFED_VECTOR_BYTES 16
#endif
#ifndef HIERFED_ISA
#define HIERFED_ISA baseline
#endif

// Each instruction-set build lives in its own namespace, so no inline function is shared
// (and silently merged by the linker) between units compiled with different flags.
namespace hierfed::HIERFED_ISA::simd {

template <class T>
struct Lanes {
    static constexpr int value = HIERFED_VECTOR_BYTES / static_cast<int>(sizeof(T));
};

// GCC applies vector_size to a dependent type only in a typedef that is a declaration.
template <class E, int Bytes>
struct VectorOf {
    typedef E type __attribute__((vector_size(Bytes)));
};

template <class T>
using Vec = typename VectorOf<T, HIERFED_VECTOR_BYTES>::type;

// float64 vector with as many lanes as Vec<T> (twice the bytes for float32).
template <class T>
using VecD = typename VectorOf<double, 8 * Lanes<T>::value>::type;

// As many T lanes as one native float64 vector: widened to float64 they fill one register,
// where compares and selects stay single instructions (GCC scalarises them on wider vectors).
template <class T>
using VecOfDoubleLanes = typename VectorOf<T, Lanes<double>::value * sizeof(T)>::type;

// Integer lanes of the same size and count as Vec<T>: comparison masks and row indices.
template <class T>
using Int = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
template <class T>
using VecI = typename VectorOf<Int<T>, HIERFED_VECTOR_BYTES>::type;

template <class V, class T>
inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <class V, class T>
inline void store(T* p, V v) {
    std::memcpy(p, &v, sizeof(V));
}

template <class V>
inline V splat(double x) {
    V v = {};
    return v + static_cast<decltype(v[0] + 0)>(x);
}

// min/max written as two different comparisons, so that they become single min/max
// instructions rather than one compare and two blends. Ties give equal values to both sides,
// so the multiset of values is kept.
template <class V>
inline V vmin(V a, V b) {
    return a < b ? a : b;
}
template <class V>
inline V vmax(V a, V b) {
    return b < a ? a : b;
}

}  // namespace hierfed::HIERFED_ISA::simd
