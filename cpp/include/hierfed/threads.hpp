// A minimal fork-join over [0, n_units): the calling thread works too; no Python inside.
#pragma once
#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace hierfed {

// Calls fn(begin, end, thread_index) on n_threads contiguous, near-equal slices of [0, n_units).
template <class Fn>
void parallel_for(std::size_t n_units, int n_threads, Fn&& fn) {
    std::size_t t = std::max<std::size_t>(1, std::min<std::size_t>(n_threads, n_units));
    if (t == 1) {
        fn(std::size_t{0}, n_units, 0);
        return;
    }
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(t);
    pool.reserve(t - 1);
    auto slice = [&](std::size_t i) {
        std::size_t b = n_units * i / t, e = n_units * (i + 1) / t;
        try {
            fn(b, e, static_cast<int>(i));
        } catch (...) {
            errors[i] = std::current_exception();
        }
    };
    for (std::size_t i = 1; i < t; ++i) pool.emplace_back(slice, i);
    slice(0);
    for (auto& th : pool) th.join();
    for (auto& err : errors)
        if (err) std::rethrow_exception(err);
}

}  // namespace hierfed
