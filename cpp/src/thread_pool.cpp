// The worker threads parallel_for runs on (threads.hpp): started once, kept for the process.
// Starting and joining a thread costs 45-70 us on a 2-core VM, more than a whole kernel pass
// over 1e5 values; a kept worker takes a job in well under 1 us while it spins (for a while
// after its last job) and in about the OS's wake-up latency once asleep.
//
// Compiled once, with the baseline flags (not in the per-instruction-set objects).
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

#include "hierfed/threads.hpp"

namespace hierfed {
namespace {

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

// How long a worker spins for the next job before it sleeps.
constexpr std::chrono::microseconds kSpin{200};

// ticket_: the job's generation (high 32 bits), a "closed" bit (no worker may join the job)
// and the number of workers inside it (low 31 bits). The caller posts a job by storing a new
// generation, runs its own share, closes the job and waits only for the workers that joined:
// a worker that wakes late finds the job closed and never touches its (stack-held) context.
constexpr std::uint64_t kClosed = std::uint64_t{1} << 31;
constexpr std::uint64_t kInside = kClosed - 1;

std::uint32_t generation_of(std::uint64_t ticket) { return static_cast<std::uint32_t>(ticket >> 32); }

class Pool {
   public:
    // Runs job(ctx, i) for i in [0, width), i = 0 on the calling thread; false (nothing run)
    // when the pool is busy with another caller's job or cannot start its threads.
    bool run(std::size_t width, PoolJob job, void* ctx) {
        if (busy_.exchange(true, std::memory_order_acquire)) return false;
        try {
            while (workers_ + 1 < width) {
                const std::size_t index = ++workers_;
                std::thread([this, index, seen = generation_] { work(index, seen); }).detach();
            }
        } catch (...) {  // no more threads (a resource limit): the caller spawns its own or fails
            busy_.store(false, std::memory_order_release);
            return false;
        }
        job_.store(job, std::memory_order_relaxed);
        ctx_.store(ctx, std::memory_order_relaxed);
        width_.store(width, std::memory_order_relaxed);
        const std::uint32_t gen = ++generation_;
        ticket_.store(std::uint64_t{gen} << 32, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            { std::lock_guard<std::mutex> lock(mutex_); }
            wake_.notify_all();
        }
        job(ctx, 0);
        ticket_.fetch_or(kClosed, std::memory_order_acq_rel);
        while ((ticket_.load(std::memory_order_acquire) & kInside) != 0) cpu_relax();
        busy_.store(false, std::memory_order_release);
        return true;
    }

   private:
    // A worker's loop; `seen` is the generation before the job it was started for.
    void work(std::size_t index, std::uint32_t seen) {
        for (;;) {
            std::uint64_t t = wait_past(seen);
            seen = generation_of(t);
            // Join the job unless it is already closed (or replaced by a newer one).
            while (generation_of(t) == seen && !(t & kClosed)) {
                if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acquire)) {
                    if (index < width_.load(std::memory_order_relaxed))
                        job_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed),
                                                             index);
                    ticket_.fetch_sub(1, std::memory_order_release);
                    break;
                }
            }
        }
    }

    // The ticket once its generation differs from `seen`: spin, then sleep.
    std::uint64_t wait_past(std::uint32_t seen) {
        const auto until = std::chrono::steady_clock::now() + kSpin;
        for (unsigned i = 1;; ++i) {
            const std::uint64_t t = ticket_.load(std::memory_order_acquire);
            if (generation_of(t) != seen) return t;
            if (i % 256 == 0 && std::chrono::steady_clock::now() > until) break;
            cpu_relax();
        }
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        std::uint64_t t = 0;
        wake_.wait(lock, [&] {
            t = ticket_.load(std::memory_order_seq_cst);
            return generation_of(t) != seen;
        });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        return t;
    }

    std::atomic<bool> busy_{false};
    std::size_t workers_ = 0;       // started so far (changed only by the caller holding busy_)
    std::uint32_t generation_ = 0;  // likewise
    std::atomic<std::uint64_t> ticket_{0};
    std::atomic<PoolJob> job_{nullptr};
    std::atomic<void*> ctx_{nullptr};
    std::atomic<std::size_t> width_{0};
    std::atomic<int> sleepers_{0};
    std::mutex mutex_;
    std::condition_variable wake_;
};

// Never destroyed: its detached workers may be waiting on it while the process exits.
std::atomic<Pool*> the_pool{nullptr};

// A forked child has only the forking thread: it starts a pool of its own. The parent's, whose
// workers did not survive the fork, stays reachable here (no leak report from LSan).
Pool* pool_before_fork = nullptr;
void forget_pool_in_child() {
    pool_before_fork = the_pool.exchange(nullptr, std::memory_order_relaxed);
}

Pool& pool() {
    Pool* p = the_pool.load(std::memory_order_acquire);
    if (p) return *p;
    static const int registered = pthread_atfork(nullptr, nullptr, forget_pool_in_child);
    (void)registered;
    auto* fresh = new Pool;
    if (the_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;  // another thread made one first
    return *p;
}

}  // namespace

bool run_on_pool(std::size_t width, PoolJob job, void* ctx) { return pool().run(width, job, ctx); }

}  // namespace hierfed
