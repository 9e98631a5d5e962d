// The compiled core of hierfed: one bind_<family> function per kernel family.
#include <pybind11/pybind11.h>

#include "hierfed/dispatch.hpp"

namespace py = pybind11;

namespace hierfed {
void bind_coordinatewise(py::module_& m);
void bind_distances(py::module_& m);
void bind_mixing(py::module_& m);
void bind_privacy(py::module_& m);
void bind_secagg(py::module_& m);
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "hierfed's compiled kernels (C++, threads, run-time SIMD dispatch).";
    m.def("simd", [] { return std::string(hierfed::kernels().name); },
          "The instruction-set build in use: avx512, avx2 or baseline.");
    hierfed::bind_coordinatewise(m);
    hierfed::bind_distances(m);
    hierfed::bind_mixing(m);
    hierfed::bind_privacy(m);
    hierfed::bind_secagg(m);
}
