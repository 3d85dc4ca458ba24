// Event-driven synaptic accumulate: out[n] = sum of w[f] over the inputs f that
// fired in row n (any nonzero spike counts as one event; for 0/1 spikes this is
// spikes @ w).  Pure adds, no multiplies: the accumulates the energy model prices.  Semantics: kernels/backend.py
// (event_matmul); oracle: kernels/synapse.py.
//
// Mapping: grid (N rows, ceil(O / blockDim.x) column tiles); a thread owns output
// column o of row n.  The block walks the spike row in chunks of blockDim.x
// inputs: it compacts the indices of the nonzero inputs of the chunk (in input
// order, by a shared-memory prefix sum, so the summation order is deterministic),
// then every thread accumulates w[f, o] over the compacted f -- only fired rows of
// w are read, each coalesced across the block.
//
// Compile-time knobs (-D):
//   NL_MAX_THREADS  __launch_bounds__ (default 256, see common.cuh)
//
// Dynamic shared memory (kernels/launch.py: event_matmul_launch):
//   2 * blockDim.x * sizeof(int) bytes
#include "common.cuh"

namespace {

template <typename T>
__device__ void event_matmul(
    const T* __restrict__ spikes,  // (N, F), mostly zeros
    const T* __restrict__ w,       // (F, O)
    T* __restrict__ out,           // (N, O)
    int N, int F, int O) {
    const int nthr = blockDim.x;
    const int tid = threadIdx.x;
    const long long n = blockIdx.x;
    const int o = blockIdx.y * nthr + tid;
    int* pos = nl::smem<int>();  // (nthr,) inclusive scan of the chunk's fired flags
    int* idx = pos + nthr;       // (nthr,) fired input indices, in input order
    const T* row = spikes + n * F;
    T acc = T(0);
    for (int base = 0; base < F; base += nthr) {
        const int f = base + tid;
        const int flag = (f < F && row[f] != T(0)) ? 1 : 0;
        pos[tid] = flag;
        __syncthreads();
        // Hillis-Steele inclusive scan over the chunk's flags.
        for (int d = 1; d < nthr; d <<= 1) {
            const int add = (tid >= d) ? pos[tid - d] : 0;
            __syncthreads();
            pos[tid] += add;
            __syncthreads();
        }
        const int count = pos[nthr - 1];
        if (flag) idx[pos[tid] - 1] = f;
        __syncthreads();
        if (o < O) {
            for (int q = 0; q < count; ++q) acc += w[(long long)idx[q] * O + o];
        }
        // pos/idx are rewritten by the next chunk.
        __syncthreads();
    }
    if (o < O) out[n * O + o] = acc;
}

}  // namespace

#define NL_EVENT_ENTRY(NAME, T)                                                                \
    extern "C" __global__ void __launch_bounds__(NL_MAX_THREADS) NAME(                         \
        const T* spikes, const T* w, T* out, int N, int F, int O) {                            \
        event_matmul<T>(spikes, w, out, N, F, O);                                              \
    }

NL_EVENT_ENTRY(event_matmul_f32, float)
NL_EVENT_ENTRY(event_matmul_f64, double)
