// Lane helpers shared by the coordinate-wise kernels (coordinatewise.hpp and
// coordinatewise_select.hpp): the non-finite probe's test, float64 widening, the midpoint.
#pragma once
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "simd.hpp"

namespace hierfed::HIERFED_ISA {

template <class V>
inline bool any_nan(V v) {
    bool bad = false;
    for (std::size_t l = 0; l < sizeof(V) / sizeof(v[0]); ++l) bad |= v[l] != v[l];
    return bad;
}

template <class T>
inline simd::Vec<T> from_double(simd::VecD<T> x) {
    return __builtin_convertvector(x, simd::Vec<T>);
}

template <class T>
inline simd::VecD<T> to_double(simd::Vec<T> x) {
    return __builtin_convertvector(x, simd::VecD<T>);
}

// The median of two middle values a <= b: halves first (no overflow near the float64
// maximum), and a itself where they are equal. Halving rounds below the smallest normal
// float64, where 0.5a + 0.5a can exceed a by one unit; for a < b the result lies in [a, b].
inline double midpoint(double a, double b) { return a == b ? a : a * 0.5 + b * 0.5; }

// Lane-wise, one native vector at a time: GCC scalarises a select on wider vectors.
template <class V>
inline V midpoint(V a, V b) {
    using E = std::remove_cv_t<std::remove_reference_t<decltype(a[0])>>;
    using N = typename simd::VectorOf<E, HIERFED_VECTOR_BYTES>::type;
    constexpr std::size_t P = sizeof(V) / sizeof(N);
    N pa[P], pb[P];
    std::memcpy(pa, &a, sizeof(V));
    std::memcpy(pb, &b, sizeof(V));
    for (std::size_t i = 0; i < P; ++i) {
        const N h = pa[i] * 0.5 + pb[i] * 0.5;
        pa[i] = pa[i] == pb[i] ? pa[i] : h;
    }
    V r;
    std::memcpy(&r, pa, sizeof(V));
    return r;
}

}  // namespace hierfed::HIERFED_ISA
