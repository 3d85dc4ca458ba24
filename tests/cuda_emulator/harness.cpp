// Host runtime for the emulated kernels (see cuda_shim.h and README.md).
//
// A block's CUDA threads are fibers (ucontext) on the calling OS thread; blocks run
// one after another.  A fiber runs until it calls __syncthreads or returns; when
// every fiber of the block has stopped, that is one barrier phase:
//   * all at __syncthreads -> the next phase starts;
//   * all returned         -> the block is done;
//   * a mix                -> a __syncthreads not reached by every thread: the launch
//                             fails (on a GPU: a hang or undefined behaviour).
// Phases run the threads in ascending thread order and reverse order alternately,
// so a value that one thread writes and another reads without a __syncthreads
// between them comes out differently in one of the two orders -- a missing barrier
// changes the result, which the tests compare with the NumPy oracle.
//
// Dynamic shared memory: one static array, filled before every block with 0xFF
// bytes (NaN for float and double, -1 for int), so a read before a write poisons the
// result; the 64 KiB past the launch's shared-memory size are checked after every
// block, so a write beyond the allocation fails the launch.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "cuda_shim.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace {

constexpr long long kSmemMax = 256 * 1024;  // above every GPU's opt-in per-block limit
constexpr long long kSmemCanary = 64 * 1024;
constexpr unsigned char kPoison = 0xFF;
constexpr int kMaxThreads = 1024;
constexpr size_t kStackBytes = 256 * 1024;  // per fiber, below a PROT_NONE guard page

}  // namespace

// Defined by common.cuh as `extern __shared__ unsigned char nl_smem_raw[]`.
namespace nl {
alignas(16) unsigned char nl_smem_raw[kSmemMax + kSmemCanary];
}

namespace {

enum class State { kReady, kAtBarrier, kDone };

struct Fiber {
    ucontext_t ctx;
    char* stack;
    State state;
};

std::mutex g_launch_mutex;  // one launch at a time: the state below is global
ucontext_t g_scheduler;
std::vector<Fiber> g_fibers;
Fiber* g_running = nullptr;
nl_emu::Body g_body = nullptr;
void* g_body_ctx = nullptr;

void fiber_main() {
    g_body(g_body_ctx);
    g_running->state = State::kDone;  // returning resumes uc_link, the scheduler
}

// Grows the fiber pool to n; stacks are mapped once and reused by every launch.
bool ensure_fibers(int n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    while (int(g_fibers.size()) < n) {
        void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return false;
        mprotect(m, page, PROT_NONE);  // an overflowing fiber faults instead of corrupting
        g_fibers.push_back(Fiber{{}, static_cast<char*>(m) + page, State::kDone});
    }
    return true;
}

// Points the first n fibers at the start of the kernel body.  Not inlined, so the
// getcontext here cannot clobber the scheduler's locals.
__attribute__((noinline)) void start_fibers(int n) {
    for (int t = 0; t < n; ++t) {
        Fiber& f = g_fibers[t];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = &g_scheduler;
        makecontext(&f.ctx, fiber_main, 0);
        f.state = State::kReady;
    }
}

bool canary_intact(long long smem_bytes) {
    const unsigned char* p = nl::nl_smem_raw + smem_bytes;
    for (long long i = 0; i < kSmemCanary; ++i) {
        if (p[i] != kPoison) return false;
    }
    return true;
}

}  // namespace

void __syncthreads() {
    Fiber* self = g_running;
    self->state = State::kAtBarrier;
    swapcontext(&self->ctx, &g_scheduler);
}

int nl_emu::launch(const char* name, int gx, int gy, int bx, long long smem_bytes, Body body,
                   void* ctx) {
    if (gx < 1 || gy < 1 || bx < 1 || bx > kMaxThreads || smem_bytes < 0 || smem_bytes > kSmemMax) {
        std::fprintf(stderr, "nl_emu: %s: invalid launch grid (%d, %d) block %d smem %lld\n", name,
                     gx, gy, bx, smem_bytes);
        return 1;
    }
    std::lock_guard<std::mutex> one_launch(g_launch_mutex);
    if (!ensure_fibers(bx)) {
        std::fprintf(stderr, "nl_emu: %s: cannot map %d fiber stacks\n", name, bx);
        return 1;
    }
    g_body = body;
    g_body_ctx = ctx;
    gridDim = dim3{unsigned(gx), unsigned(gy), 1};
    blockDim = dim3{unsigned(bx), 1, 1};
    long long phase = 0;
    for (int by = 0; by < gy; ++by) {
        for (int bxi = 0; bxi < gx; ++bxi) {
            blockIdx = dim3{unsigned(bxi), unsigned(by), 0};
            std::memset(nl::nl_smem_raw, kPoison, smem_bytes + kSmemCanary);
            start_fibers(bx);
            for (;; ++phase) {
                const bool reverse = phase % 2 != 0;
                int at_barrier = 0, done = 0;
                for (int i = 0; i < bx; ++i) {
                    const int t = reverse ? bx - 1 - i : i;
                    Fiber& f = g_fibers[t];
                    threadIdx = dim3{unsigned(t), 0, 0};
                    g_running = &f;
                    swapcontext(&g_scheduler, &f.ctx);
                    (f.state == State::kDone ? done : at_barrier) += 1;
                }
                g_running = nullptr;
                if (done == bx) break;
                if (done != 0) {
                    std::fprintf(stderr,
                                 "nl_emu: %s block (%d, %d): %d of %d threads wait at "
                                 "__syncthreads, the others returned (divergent barrier)\n",
                                 name, bxi, by, at_barrier, bx);
                    return 3;
                }
                for (int t = 0; t < bx; ++t) g_fibers[t].state = State::kReady;
            }
            if (!canary_intact(smem_bytes)) {
                std::fprintf(stderr,
                             "nl_emu: %s block (%d, %d) wrote past its %lld bytes of dynamic "
                             "shared memory\n",
                             name, bxi, by, smem_bytes);
                return 2;
            }
        }
    }
    return 0;
}
