// LIF scan: snnTorch Leaky (reset_delay=True, graded_spikes_factor=1) over T steps,
// one launch per micro-batch.  Equations: shared/reference/neurons.md section 3;
// oracle: kernels/lif.py.
//
//   R_t = [U_{t-1} > theta]                 (from the previous membrane, strict >)
//   subtract: U_t = beta*U_{t-1} + I_t - R_t*theta
//   zero:     U_t = beta*(1 - R_t)*U_{t-1} + I_t
//   none:     U_t = beta*U_{t-1} + I_t
//   S_t = [U_t > theta]
//
// Mapping: one thread per (sample, neuron), grid-stride; the time loop runs in the
// thread with the membrane in a register (SpikingJelly's lif_forward organisation).
// Consecutive threads take consecutive neurons, so every load/store is coalesced.
// Products and sums use explicitly rounded intrinsics (no FMA contraction) so the
// membrane compared with theta is bit-identical to NumPy's: a one-ulp difference
// at the threshold would flip a spike.
//
// Compile-time knobs (-D):
//   NL_MAX_THREADS  __launch_bounds__ (default 256, see common.cuh)
#include "common.cuh"

namespace {

// Reset codes shared with kernels/cuda_sources.py (RESET_CODES).
enum Reset { RESET_SUBTRACT = 0, RESET_ZERO = 1, RESET_NONE = 2 };

template <typename T>
__device__ void lif_scan(
    const T* __restrict__ cur,     // (B, T, H) input current
    const T* __restrict__ mem0,    // (B, H)
    const T* __restrict__ beta,    // (H,) clamped to [0, 1]
    const T* __restrict__ thr,     // (H,)
    T* __restrict__ spk,           // (B, T, H) out, 0/1
    T* __restrict__ mem,           // (B, T, H) out
    int B, int Tn, int H, int reset) {
    // 64-bit lane index: B and H are each < 2^31, their product need not be, and idx + the
    // grid stride runs past n before the loop ends (an int index overflowed near n = 2^31
    // minus the grid).  kernels.launch.elementwise_launch checks n - 1 + stride fits.
    const long long n = (long long)B * H;
    // The stride and the first lane fit in int (the launcher's grid); (b, j) advance by
    // the stride without a 64-bit division (a call that spilled registers in the loop).
    const int stride = gridDim.x * blockDim.x;
    const int step_b = stride / H, step_j = stride % H;
    const int i0 = blockIdx.x * blockDim.x + threadIdx.x;
    long long b = i0 / H;
    int j = i0 % H;
    for (long long idx = i0; idx < n; idx += stride) {
        const T be = beta[j];
        const T th = thr[j];
        T m = mem0[idx];
        for (int t = 0; t < Tn; ++t) {
            const long long o = (b * Tn + t) * H + j;
            const T r = (m > th) ? T(1) : T(0);
            const T i_t = cur[o];
            if (reset == RESET_SUBTRACT) {
                m = nl::sub_rn(nl::add_rn(nl::mul_rn(be, m), i_t), nl::mul_rn(r, th));
            } else if (reset == RESET_ZERO) {
                // beta * (1 - R) * U written as NumPy's beta * where(R, 0, U): same value,
                // and no inf * 0 = NaN for a diverged membrane.
                m = nl::add_rn(nl::mul_rn(be, (m > th) ? T(0) : m), i_t);
            } else {
                m = nl::add_rn(nl::mul_rn(be, m), i_t);
            }
            spk[o] = (m > th) ? T(1) : T(0);
            mem[o] = m;
        }
        j += step_j;
        b += step_b;
        if (j >= H) {
            j -= H;
            ++b;
        }
    }
}

}  // namespace

#define NL_LIF_ENTRY(NAME, T)                                                                  \
    extern "C" __global__ void __launch_bounds__(NL_MAX_THREADS) NAME(                         \
        const T* cur, const T* mem0, const T* beta, const T* thr, T* spk, T* mem, int B,       \
        int Tn, int H, int reset) {                                                            \
        lif_scan<T>(cur, mem0, beta, thr, spk, mem, B, Tn, H, reset);                          \
    }

NL_LIF_ENTRY(lif_scan_f32, float)
NL_LIF_ENTRY(lif_scan_f64, double)
