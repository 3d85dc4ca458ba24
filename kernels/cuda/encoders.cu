// Delta-modulation scan (the IMU / temporal-contrast encoder) over T steps, one
// launch per micro-batch.  Semantics: kernels/backend.py (delta_scan); oracle:
// kernels/encoders.py.
//
//   per step where valid[b, t]:
//     not primed: ref = x, primed = True, no event
//     primed:     on = (x - ref >= thr), off = (ref - x >= thr); where either, ref = x
//   invalid steps emit nothing and leave (ref, primed) unchanged.
//
// Mapping: one thread per (sample, channel), grid-stride; the time loop runs in
// the thread with (ref, primed) in registers; consecutive threads take consecutive
// channels (coalesced).  Booleans travel as one byte (NumPy/CuPy bool layout).
//
// Compile-time knobs (-D):
//   NL_MAX_THREADS  __launch_bounds__ (default 256, see common.cuh)
#include "common.cuh"

namespace {

template <typename T>
__device__ void delta_scan(
    const T* __restrict__ x,                  // (B, T, C)
    const T* __restrict__ ref0,               // (B, C)
    const unsigned char* __restrict__ primed0,  // (B, C) bool
    const T* __restrict__ thr,                // (C,)
    const unsigned char* __restrict__ valid,  // (B, T) bool
    T* __restrict__ on,                       // (B, T, C) out, 0/1
    T* __restrict__ off,                      // (B, T, C) out, 0/1
    T* __restrict__ ref_out,                  // (B, C) out
    unsigned char* __restrict__ primed_out,   // (B, C) out, bool
    int B, int Tn, int C) {
    // 64-bit lane index (see lif.cu): B and C are each < 2^31, their product need not be.
    const long long n = (long long)B * C;
    // The stride and the first lane fit in int (the launcher's grid); (b, c) advance by
    // the stride without a 64-bit division (a call that spilled registers in the loop).
    const int stride = gridDim.x * blockDim.x;
    const int step_b = stride / C, step_c = stride % C;
    const int i0 = blockIdx.x * blockDim.x + threadIdx.x;
    long long b = i0 / C;
    int c = i0 % C;
    for (long long idx = i0; idx < n; idx += stride) {
        const T th = thr[c];
        T ref = ref0[idx];
        bool primed = primed0[idx] != 0;
        for (int t = 0; t < Tn; ++t) {
            const long long o = (b * Tn + t) * C + c;
            T e_on = T(0), e_off = T(0);
            if (valid[b * Tn + t]) {
                const T xv = x[o];
                if (!primed) {
                    ref = xv;
                    primed = true;
                } else {
                    const bool up = nl::sub_rn(xv, ref) >= th;
                    const bool down = nl::sub_rn(ref, xv) >= th;
                    if (up) e_on = T(1);
                    if (down) e_off = T(1);
                    if (up || down) ref = xv;
                }
            }
            on[o] = e_on;
            off[o] = e_off;
        }
        ref_out[idx] = ref;
        primed_out[idx] = primed ? 1 : 0;
        c += step_c;
        b += step_b;
        if (c >= C) {
            c -= C;
            ++b;
        }
    }
}

}  // namespace

#define NL_DELTA_ENTRY(NAME, T)                                                                \
    extern "C" __global__ void __launch_bounds__(NL_MAX_THREADS) NAME(                         \
        const T* x, const T* ref0, const unsigned char* primed0, const T* thr,                 \
        const unsigned char* valid, T* on, T* off, T* ref_out, unsigned char* primed_out,      \
        int B, int Tn, int C) {                                                                \
        delta_scan<T>(x, ref0, primed0, thr, valid, on, off, ref_out, primed_out, B, Tn, C);   \
    }

NL_DELTA_ENTRY(delta_scan_f32, float)
NL_DELTA_ENTRY(delta_scan_f64, double)
