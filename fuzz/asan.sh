#!/usr/bin/env bash
# Build _core with ASan + UBSan (HIERFED_SANITIZE=address,undefined) in build/asan and run a
# command against it: `fuzz/asan.sh python -m pytest tests -q`.
#
# The package is copied to build/asan/site with the sanitized module and put first on
# PYTHONPATH. The interpreter is not built with ASan, so the runtime is preloaded (with
# libstdc++, whose __cxa_throw ASan must find at start-up); leak detection is off because
# CPython's own allocations at exit would be reported (tests/test_leaks.py and valgrind cover
# leaks). Every ASan or UBSan report aborts the process: the command then fails.
# Needs: cmake, ninja and pybind11 importable by `python` (PYTHON overrides), g++.
# HIERFED_ASAN_BUILD overrides the build directory (default build/asan).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python}"
build="${HIERFED_ASAN_BUILD:-$root/build/asan}"
mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DHIERFED_SANITIZE=address,undefined -DPython_EXECUTABLE="$(command -v "$py")" \
  -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" > "$build.cmake.log"
ninja -C "$build" -j "${HIERFED_BUILD_JOBS:-2}" > "$build.ninja.log" || {
  tail -50 "$build.ninja.log"
  exit 1
}
rm -rf "$build/site" && mkdir -p "$build/site"
cp -r "$root/python/hierfed" "$build/site/"
rm -f "$build/site/hierfed/"_core*.so
cp "$build"/_core*.so "$build/site/hierfed/"
export PYTHONPATH="$build/site${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
exec "$@"
