// Binding-side views of the updates: Python lists of 1-D arrays checked and turned into row
// pointers (never trust the caller with raw memory), the arrays kept alive while kernels run.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "hierfed/threads.hpp"
#include "hierfed/views.hpp"

namespace hierfed {

namespace py = pybind11;

// Whether the array's data is aligned for its element type: the kernels read and write it
// through T*, which for a misaligned address is undefined behaviour (UBSan reports it; aligned
// SIMD loads would fault). numpy makes such arrays from byte buffers at odd offsets.
inline bool aligned(const py::array& arr) {
    return (arr.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

// The one-call entries (clip_matrix, arc_matrix, monna_matrix) answer only a plain input and
// hand anything else back (None) to Python's general way, which checks and handles it.
// Plain: an exact numpy ndarray (no subclass) of `ndim` dimensions, none of them empty,
// C-contiguous and aligned.
inline bool plain_array(py::handle x, int ndim) {
    if (Py_TYPE(x.ptr()) != py::detail::npy_api::get().PyArray_Type_) return false;
    auto a = py::reinterpret_borrow<py::array>(x);
    constexpr int kPlain =
        py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    if (a.ndim() != ndim || (a.flags() & kPlain) != kPlain) return false;
    for (int k = 0; k < ndim; ++k)
        if (a.shape(k) < 1) return false;
    return true;
}

// An exact Python int (no bool) in [0, n), or -1.
inline long long plain_count(py::handle f, long long n) {
    if (!PyLong_CheckExact(f.ptr())) return -1;
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(f.ptr(), &overflow);
    return overflow || v < 0 || v >= n ? -1 : v;
}

template <class T>
struct Batch {
    std::vector<py::object> keep_alive;
    std::vector<const T*> row_ptrs;
    std::vector<Segment<T>> segments;
    int n = 0;
};

// An argument's name for error messages, e.g. "segments[0][3]": built only when an error is
// raised (one string per row on every call cost more than the checks themselves).
struct Where {
    const char* name;
    long long s = -1, i = -1;  // indices, -1 for none
    Where(const char* n) : name(n) {}  // NOLINT: implicit, a plain name
    Where(const char* n, std::size_t s_, long long i_ = -1)
        : name(n), s(static_cast<long long>(s_)), i(i_) {}
    std::string str() const {
        std::string w = name;
        if (s >= 0) w += "[" + std::to_string(s) + "]";
        if (i >= 0) w += "[" + std::to_string(i) + "]";
        return w;
    }
};

// A 1-D contiguous numpy array of element type T (writeable when `write`), or a clear error.
template <class T>
py::array checked(py::handle obj, const Where& what, bool write) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(what.str() + " must be a numpy array");
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!arr.dtype().is(py::dtype::of<T>()))
        throw py::type_error(what.str() + " has the wrong dtype");
    if (arr.ndim() != 1) throw py::value_error(what.str() + " must be 1-D");
    if (arr.shape(0) > 1 && arr.strides(0) != static_cast<py::ssize_t>(sizeof(T)))
        throw py::value_error(what.str() + " must be contiguous");
    if (!aligned(arr)) throw py::value_error(what.str() + " must be aligned (copy it)");
    if (write && !arr.writeable()) throw py::value_error(what.str() + " must be writeable");
    return arr;
}

// checked<T>, and of length `len`.
template <class T>
py::array checked_array(py::handle obj, const Where& what, std::size_t len, bool write) {
    auto arr = checked<T>(obj, what, write);
    if (static_cast<std::size_t>(arr.shape(0)) != len)
        throw py::value_error(what.str() + " must be 1-D of length " + std::to_string(len));
    return arr;
}

// segments[s] is a list of n rows; outs[s] (when given) one array per segment, which sets the
// segment's length and becomes Segment::out (written by the kernel when `write_outs`).
// Without outs, each segment's length is that of its first row and Segment::out is null.
template <class T>
Batch<T> make_batch(const py::list& segments, const py::list* outs, bool write_outs = true) {
    Batch<T> b;
    if (outs && segments.size() != outs->size())
        throw py::value_error("segments and outs must have the same length");
    if (segments.empty()) throw py::value_error("need at least one segment");
    b.n = static_cast<int>(py::len(segments[0]));
    if (b.n < 1) throw py::value_error("need at least one update");
    for (std::size_t s = 0; s < segments.size(); ++s) {
        if (!py::isinstance<py::list>(segments[s]) ||
            static_cast<int>(py::len(segments[s])) != b.n)
            throw py::value_error("every segment must be a list of n arrays");
        py::list rows = py::reinterpret_borrow<py::list>(segments[s]);
        T* out_ptr = nullptr;
        std::size_t len;
        if (outs) {
            py::handle o = (*outs)[s];
            auto out = checked_array<T>(o, Where("outs", s),
                                        static_cast<std::size_t>(py::len(o)), write_outs);
            len = static_cast<std::size_t>(out.shape(0));
            // A read-only `outs` (an input such as a point) is never written through.
            out_ptr = write_outs ? static_cast<T*>(out.mutable_data())
                                 : const_cast<T*>(static_cast<const T*>(out.data()));
            b.keep_alive.push_back(out);
        } else {
            if (!py::isinstance<py::array>(rows[0]))
                throw py::type_error(Where("segments", s, 0).str() + " must be a numpy array");
            len = static_cast<std::size_t>(py::len(rows[0]));
        }
        for (int i = 0; i < b.n; ++i) {
            auto row = checked_array<T>(rows[i], Where("segments", s, i), len, false);
            b.row_ptrs.push_back(static_cast<const T*>(row.data()));
            b.keep_alive.push_back(row);
        }
        b.segments.push_back(Segment<T>{nullptr, out_ptr, len});
    }
    for (std::size_t s = 0; s < b.segments.size(); ++s)
        b.segments[s].rows = b.row_ptrs.data() + s * b.n;
    return b;
}

// Runs fn(segment index, c0, c1) -> bool ("saw a non-finite value") over every segment's
// coordinates, threads taking units of 64 coordinates (a multiple of every lane count) of the
// concatenated segments; one thread when the work (`elements` values) is small. Returns
// whether any call returned true. Call with the GIL released.
template <class T, class Fn>
bool over_coordinates(const Batch<T>& b, std::size_t elements, int n_threads, Fn&& fn) {
    constexpr std::size_t kUnit = 64;
    std::vector<std::size_t> first_unit{0};
    for (const auto& s : b.segments)
        first_unit.push_back(first_unit.back() + (s.len + kUnit - 1) / kUnit);
    if (elements < (std::size_t{1} << 16)) n_threads = 1;  // not worth a thread
    std::vector<char> bad(std::max(1, n_threads), 0);
    parallel_for(first_unit.back(), n_threads, [&](std::size_t u0, std::size_t u1, int tid) {
        for (std::size_t s = 0; s < b.segments.size(); ++s) {
            const std::size_t a = std::max(u0, first_unit[s]), e = std::min(u1, first_unit[s + 1]);
            if (a >= e) continue;
            const std::size_t c0 = (a - first_unit[s]) * kUnit;
            const std::size_t c1 = std::min(b.segments[s].len, (e - first_unit[s]) * kUnit);
            bad[tid] |= fn(s, c0, c1);
        }
    });
    return std::any_of(bad.begin(), bad.end(), [](char c) { return c != 0; });
}

// The element type of the first row (float32 or float64), for dispatch.
inline py::dtype first_row_dtype(const py::list& segments) {
    if (segments.empty() || !py::isinstance<py::list>(segments[0]) || py::len(segments[0]) == 0)
        throw py::value_error("segments must be a non-empty list of non-empty lists of arrays");
    py::handle row = py::reinterpret_borrow<py::list>(segments[0])[0];
    if (!py::isinstance<py::array>(row)) throw py::type_error("segments[0][0] must be a numpy array");
    return py::reinterpret_borrow<py::array>(row).dtype();
}

}  // namespace hierfed
