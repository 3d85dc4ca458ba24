// CfC scan: ncps CfCCell (non-wired) over T steps, one launch per micro-batch.
// Equations: shared/reference/neurons.md section 1; oracle: kernels/cfc.py.
//
// Mapping: one block per NL_SPB consecutive samples, threads over output columns
// (a thread owns columns tid, tid + blockDim.x, ...).  The time loop runs inside
// the kernel; h (double-buffered) and the backbone activations live in dynamic
// shared memory.  Weights are read from global memory (L2-resident; every weight
// read is reused for the NL_SPB samples of the block) or, when stage_w != 0,
// copied once into shared memory (kernels/launch.py decides when they fit).
//
// Compile-time knobs (-D):
//   NL_SPB          samples per block (default 1); register accumulators per thread
//   NL_MAX_THREADS  __launch_bounds__ (default 256, see common.cuh)
//
// Dynamic shared memory, in elements of T (kernels/launch.py: cfc_smem_elems):
//   2*NL_SPB*H (h) + 2*NL_SPB*U (backbone, 0 when backbone_layers == 0)
//   + staged weights when stage_w: H*Z1 + (L-1)*(U*U + U) + U*nh*H + nh*H
#include "common.cuh"

#ifndef NL_SPB
#define NL_SPB 1
#endif

namespace {

// Mode codes shared with kernels/cuda_sources.py (CFC_MODE_CODES).
enum CfCMode { MODE_DEFAULT = 0, MODE_PURE = 1, MODE_NO_GATE = 2 };

// Heads and state update for every unit j owned by this thread.
// pre_q = bias_q + zin @ W[:, q*H + j] for the NH heads (ff1, ff2, time_a, time_b),
// where bias is b_head (backbone) or the precomputed input row u[b, t] (no backbone).
template <typename T, int NH>
__device__ __forceinline__ void heads_update(
    const T* zin, int K, const T* W, const T* b_head, const T* u, long long u_off, int Z1,
    const T* __restrict__ dt, const T* __restrict__ w_tau, const T* __restrict__ a_par,
    T* h_out, T* __restrict__ h_seq, int b0, int B, int Tn, int t, int H, int mode) {
    const int NW = NH * H;
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        T pre[NH][NL_SPB];
#pragma unroll
        for (int s = 0; s < NL_SPB; ++s) {
            const bool ok = b0 + s < B;
#pragma unroll
            for (int q = 0; q < NH; ++q) {
                const int col = q * H + j;
                if (u != nullptr) {
                    pre[q][s] = ok ? u[u_off + (long long)s * Tn * Z1 + col] : T(0);
                } else {
                    pre[q][s] = b_head[col];
                }
            }
        }
        for (int k = 0; k < K; ++k) {
            T w[NH];
#pragma unroll
            for (int q = 0; q < NH; ++q) w[q] = W[(long long)k * NW + q * H + j];
#pragma unroll
            for (int s = 0; s < NL_SPB; ++s) {
                const T zk = zin[s * K + k];
#pragma unroll
                for (int q = 0; q < NH; ++q) pre[q][s] += zk * w[q];
            }
        }
#pragma unroll
        for (int s = 0; s < NL_SPB; ++s) {
            const int b = b0 + s;
            T hn = T(0);
            if (b < B) {
                const T d = dt[(long long)b * Tn + t];
                if (NH == 1) {
                    // pure: A - A * exp(-dt * (|w_tau| + |ff1|)) * ff1; ff1 not squashed.
                    const T A = a_par[j];
                    hn = A - A * nl::exp_(-d * (nl::abs_(w_tau[j]) + nl::abs_(pre[0][s]))) * pre[0][s];
                } else {
                    const T f1 = nl::tanh_(pre[0][s]);
                    const T f2 = nl::tanh_(pre[NH > 1 ? 1 : 0][s]);
                    const T g = nl::sigmoid(pre[NH > 2 ? 2 : 0][s] * d + pre[NH > 3 ? 3 : 0][s]);
                    hn = (mode == MODE_NO_GATE) ? f1 + g * f2 : f1 * (T(1) - g) + g * f2;
                }
                h_seq[((long long)b * Tn + t) * H + j] = hn;
            }
            h_out[s * H + j] = hn;
        }
    }
}

// First backbone layer (recurrent half) or a further backbone layer, activated:
// zout[s, j] = act(bias[s, j] + zin[s, :] @ W[:, j]) for j < U.
template <typename T>
__device__ __forceinline__ void dense_act(
    const T* zin, int K, const T* W, const T* bias, const T* u, long long u_off, int Tn,
    int U, T* zout, int b0, int B, int act) {
    for (int j = threadIdx.x; j < U; j += blockDim.x) {
        T acc[NL_SPB];
#pragma unroll
        for (int s = 0; s < NL_SPB; ++s) {
            if (u != nullptr) {
                acc[s] = (b0 + s < B) ? u[u_off + (long long)s * Tn * U + j] : T(0);
            } else {
                acc[s] = bias[j];
            }
        }
        for (int k = 0; k < K; ++k) {
            const T w = W[(long long)k * U + j];
#pragma unroll
            for (int s = 0; s < NL_SPB; ++s) acc[s] += zin[s * K + k] * w;
        }
#pragma unroll
        for (int s = 0; s < NL_SPB; ++s) zout[s * U + j] = nl::activate(acc[s], act);
    }
}

template <typename T>
__device__ __forceinline__ const T* stage(const T* src, long long n, T*& dst) {
    for (long long i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
    const T* out = dst;
    dst += n;
    return out;
}

template <typename T>
__device__ void cfc_scan(
    const T* __restrict__ u,       // (B, T, Z1) input half of the first stage, bias included
    const T* __restrict__ h0,      // (B, H)
    const T* __restrict__ dt,      // (B, T) elapsed time per sample and step
    const T* w_h,                  // (H, Z1) recurrent half of the first stage
    const T* bb_w,                 // (L-1, U, U) backbone layers 2..L
    const T* bb_b,                 // (L-1, U)
    const T* w_head,               // (U, nh*H) heads ff1|ff2|time_a|time_b (L >= 1)
    const T* b_head,               // (nh*H,)
    const T* __restrict__ w_tau,   // (H,) pure mode
    const T* __restrict__ a_par,   // (H,) pure mode
    T* __restrict__ h_seq,         // (B, T, H) out
    int B, int Tn, int H, int Z1, int L, int mode, int act, int stage_w) {
    const int nh = (mode == MODE_PURE) ? 1 : 4;
    const int U = Z1;  // backbone width when L >= 1
    const int b0 = blockIdx.x * NL_SPB;
    const int zlen = (L > 0) ? NL_SPB * U : 0;

    T* h_cur = nl::smem<T>();
    T* h_nxt = h_cur + NL_SPB * H;
    T* z_a = h_nxt + NL_SPB * H;
    T* z_b = z_a + zlen;
    if (stage_w) {
        T* dst = z_b + zlen;
        w_h = stage(w_h, (long long)H * Z1, dst);
        if (L > 0) {
            bb_w = stage(bb_w, (long long)(L - 1) * U * U, dst);
            bb_b = stage(bb_b, (long long)(L - 1) * U, dst);
            w_head = stage(w_head, (long long)U * nh * H, dst);
            b_head = stage(b_head, (long long)nh * H, dst);
        }
    }
    for (int i = threadIdx.x; i < NL_SPB * H; i += blockDim.x) {
        const int b = b0 + i / H;
        h_cur[i] = (b < B) ? h0[(long long)b * H + i % H] : T(0);
    }
    __syncthreads();

    for (int t = 0; t < Tn; ++t) {
        const long long u_off = ((long long)b0 * Tn + t) * Z1;
        if (L == 0) {
            // No backbone: the first stage is the heads themselves (no activation).
            if (nh == 1) {
                heads_update<T, 1>(h_cur, H, w_h, nullptr, u, u_off, Z1, dt, w_tau, a_par,
                                   h_nxt, h_seq, b0, B, Tn, t, H, mode);
            } else {
                heads_update<T, 4>(h_cur, H, w_h, nullptr, u, u_off, Z1, dt, w_tau, a_par,
                                   h_nxt, h_seq, b0, B, Tn, t, H, mode);
            }
        } else {
            dense_act(h_cur, H, w_h, (const T*)nullptr, u, u_off, Tn, U, z_a, b0, B, act);
            __syncthreads();
            T* zin = z_a;
            T* zout = z_b;
            for (int l = 0; l < L - 1; ++l) {
                dense_act(zin, U, bb_w + (long long)l * U * U, bb_b + (long long)l * U,
                          (const T*)nullptr, 0LL, Tn, U, zout, b0, B, act);
                __syncthreads();
                T* tmp = zin;
                zin = zout;
                zout = tmp;
            }
            if (nh == 1) {
                heads_update<T, 1>(zin, U, w_head, b_head, (const T*)nullptr, 0LL, Z1, dt, w_tau,
                                   a_par, h_nxt, h_seq, b0, B, Tn, t, H, mode);
            } else {
                heads_update<T, 4>(zin, U, w_head, b_head, (const T*)nullptr, 0LL, Z1, dt, w_tau,
                                   a_par, h_nxt, h_seq, b0, B, Tn, t, H, mode);
            }
        }
        // Everyone has read h_cur (and z) for this step before it is overwritten.
        __syncthreads();
        T* tmp = h_cur;
        h_cur = h_nxt;
        h_nxt = tmp;
    }
}

}  // namespace

#define NL_CFC_ENTRY(NAME, T)                                                                  \
    extern "C" __global__ void __launch_bounds__(NL_MAX_THREADS) NAME(                         \
        const T* u, const T* h0, const T* dt, const T* w_h, const T* bb_w, const T* bb_b,      \
        const T* w_head, const T* b_head, const T* w_tau, const T* a_par, T* h_seq, int B,     \
        int Tn, int H, int Z1, int L, int mode, int act, int stage_w) {                        \
        cfc_scan<T>(u, h0, dt, w_h, bb_w, bb_b, w_head, b_head, w_tau, a_par, h_seq, B, Tn, H, \
                    Z1, L, mode, act, stage_w);                                                \
    }

NL_CFC_ENTRY(cfc_scan_f32, float)
NL_CFC_ENTRY(cfc_scan_f64, double)
