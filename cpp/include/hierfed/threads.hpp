// A minimal fork-join over [0, n_units): the calling thread works too; no Python inside.
// Threads claim chunks from a shared counter, so one thread that the OS delays does not hold
// up the others (static halves made a busy machine as slow as its slowest core). The other
// threads are the process's kept workers (cpp/src/thread_pool.cpp); when another caller holds
// them (two Python threads in kernels at once, or a nested call), fresh threads as before.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace hierfed {

using PoolJob = void (*)(void* ctx, std::size_t thread_index);

// Runs job(ctx, i) for every i in [0, width), i = 0 on the calling thread, the others on the
// kept workers; returns false, having run nothing, when they are busy.
bool run_on_pool(std::size_t width, PoolJob job, void* ctx);

// Calls fn(begin, end, thread_index) on chunks covering [0, n_units) exactly once.
template <class Fn>
void parallel_for(std::size_t n_units, int n_threads, Fn&& fn) {
    std::size_t t = std::max<std::size_t>(1, std::min<std::size_t>(n_threads, n_units));
    if (t == 1) {
        fn(std::size_t{0}, n_units, 0);
        return;
    }
    const std::size_t chunk = std::max<std::size_t>(1, n_units / (t * 16));
    std::atomic<std::size_t> next{0};
    std::vector<std::exception_ptr> errors(t);
    auto work = [&](std::size_t i) {
        try {
            for (;;) {
                std::size_t b = next.fetch_add(chunk, std::memory_order_relaxed);
                if (b >= n_units) break;
                fn(b, std::min(n_units, b + chunk), static_cast<int>(i));
            }
        } catch (...) {
            errors[i] = std::current_exception();
            next.store(n_units, std::memory_order_relaxed);  // stop the others early
        }
    };
    using Work = decltype(work);
    const PoolJob job = [](void* ctx, std::size_t i) { (*static_cast<Work*>(ctx))(i); };
    if (!run_on_pool(t, job, &work)) {
        std::vector<std::thread> threads;
        threads.reserve(t - 1);
        for (std::size_t i = 1; i < t; ++i) threads.emplace_back(work, i);
        work(0);
        for (auto& th : threads) th.join();
    }
    for (auto& err : errors)
        if (err) std::rethrow_exception(err);
}

}  // namespace hierfed
