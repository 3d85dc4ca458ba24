// LTC scan: ncps LTCCell with its fused semi-implicit Euler solver, over T steps,
// one launch per micro-batch.  Equations: shared/reference/neurons.md section 2;
// oracle: kernels/ltc.py.  Parameters are the effective ones (softplus and
// sparsity masks applied on the host, kernels/params.py LTCParams).
//
// Mapping: one block per NL_SPB consecutive samples, threads over target neurons j
// (a thread owns j = tid, tid + blockDim.x, ...).  Per step: the input row x[b, t]
// is staged in shared memory, the sensory synapses are evaluated once (one sigmoid
// per (sample, input, neuron), never materialised as (B, S, N)), then ode_unfolds
// iterations with the recurrent sigmoids; v is double-buffered in shared memory.
// The (N, N) recurrent synapse arrays -- read K times per step -- are staged in
// shared memory when stage_w != 0 (kernels/launch.py decides when they fit).
//
// Compile-time knobs (-D):
//   NL_SPB          samples per block (default 1); register accumulators per thread
//   NL_MAX_THREADS  __launch_bounds__ (default 256, see common.cuh)
//
// Dynamic shared memory, in elements of T (kernels/launch.py: ltc_smem_elems):
//   NL_SPB * (2*N (v) + S (input row) + 2*N (sensory num/den)) + (4*N*N when stage_w)
#include "common.cuh"

#ifndef NL_SPB
#define NL_SPB 1
#endif

namespace {

template <typename T>
__device__ void ltc_scan(
    const T* __restrict__ x,      // (B, T, S) after the affine input map
    const T* __restrict__ v0,     // (B, N)
    const T* __restrict__ dt,     // (B, T)
    const T* __restrict__ gleak,  // (N,)
    const T* __restrict__ vleak,  // (N,)
    const T* __restrict__ cm,     // (N,)
    const T* w, const T* sigma, const T* mu, const T* erev,  // (N, N) [source, target]
    const T* __restrict__ sw, const T* __restrict__ ssig,     // (S, N)
    const T* __restrict__ smu, const T* __restrict__ serev,   // (S, N)
    T* __restrict__ v_seq,        // (B, T, N) out
    int B, int Tn, int S, int N, int K, T eps, int stage_w) {
    const int b0 = blockIdx.x * NL_SPB;
    T* v_cur = nl::smem<T>();
    T* v_nxt = v_cur + NL_SPB * N;
    T* xs = v_nxt + NL_SPB * N;
    T* num_s = xs + NL_SPB * S;
    T* den_s = num_s + NL_SPB * N;
    if (stage_w) {
        T* ws = den_s + NL_SPB * N;
        const long long nn = (long long)N * N;
        for (long long i = threadIdx.x; i < nn; i += blockDim.x) {
            ws[i] = w[i];
            ws[nn + i] = sigma[i];
            ws[2 * nn + i] = mu[i];
            ws[3 * nn + i] = erev[i];
        }
        w = ws;
        sigma = ws + nn;
        mu = ws + 2 * nn;
        erev = ws + 3 * nn;
    }
    for (int i = threadIdx.x; i < NL_SPB * N; i += blockDim.x) {
        const int b = b0 + i / N;
        v_cur[i] = (b < B) ? v0[(long long)b * N + i % N] : T(0);
    }

    for (int t = 0; t < Tn; ++t) {
        for (int i = threadIdx.x; i < NL_SPB * S; i += blockDim.x) {
            const int b = b0 + i / S;
            xs[i] = (b < B) ? x[((long long)b * Tn + t) * S + i % S] : T(0);
        }
        __syncthreads();

        // Sensory synapses, once per step: N^s = sum_i s_ij erev_ij, D^s = sum_i s_ij.
        for (int j = threadIdx.x; j < N; j += blockDim.x) {
            T an[NL_SPB], ad[NL_SPB];
#pragma unroll
            for (int s = 0; s < NL_SPB; ++s) an[s] = ad[s] = T(0);
            for (int i = 0; i < S; ++i) {
                const long long ij = (long long)i * N + j;
                const T wij = sw[ij], sg = ssig[ij], m = smu[ij], e = serev[ij];
#pragma unroll
                for (int s = 0; s < NL_SPB; ++s) {
                    const T a = wij * nl::sigmoid(sg * (xs[s * S + i] - m));
                    an[s] += a * e;
                    ad[s] += a;
                }
            }
#pragma unroll
            for (int s = 0; s < NL_SPB; ++s) {
                num_s[s * N + j] = an[s];
                den_s[s * N + j] = ad[s];
            }
        }

        // K fused semi-implicit Euler unfolds with step dt/K: c_j = cm_j / (dt / K).
        for (int k = 0; k < K; ++k) {
            for (int j = threadIdx.x; j < N; j += blockDim.x) {
                T an[NL_SPB], ad[NL_SPB];
#pragma unroll
                for (int s = 0; s < NL_SPB; ++s) an[s] = ad[s] = T(0);
                for (int i = 0; i < N; ++i) {
                    const long long ij = (long long)i * N + j;
                    const T wij = w[ij], sg = sigma[ij], m = mu[ij], e = erev[ij];
#pragma unroll
                    for (int s = 0; s < NL_SPB; ++s) {
                        const T r = wij * nl::sigmoid(sg * (v_cur[s * N + i] - m));
                        an[s] += r * e;
                        ad[s] += r;
                    }
                }
                const T gl = gleak[j];
                const T glvl = gl * vleak[j];
#pragma unroll
                for (int s = 0; s < NL_SPB; ++s) {
                    const int b = b0 + s;
                    // Padding samples (b >= B) use dt = 1 so they stay finite; never stored.
                    const T d = (b < B) ? dt[(long long)b * Tn + t] : T(1);
                    const T c = cm[j] / (d / T(K));
                    const T num = c * v_cur[s * N + j] + glvl + (an[s] + num_s[s * N + j]);
                    const T den = c + gl + (ad[s] + den_s[s * N + j]);
                    v_nxt[s * N + j] = num / (den + eps);
                }
            }
            __syncthreads();
            T* tmp = v_cur;
            v_cur = v_nxt;
            v_nxt = tmp;
        }

        for (int j = threadIdx.x; j < N; j += blockDim.x) {
#pragma unroll
            for (int s = 0; s < NL_SPB; ++s) {
                const int b = b0 + s;
                if (b < B) v_seq[((long long)b * Tn + t) * N + j] = v_cur[s * N + j];
            }
        }
        // xs is rewritten next step; every thread is done with it (and with v_cur).
        __syncthreads();
    }
}

}  // namespace

#define NL_LTC_ENTRY(NAME, T)                                                                  \
    extern "C" __global__ void __launch_bounds__(NL_MAX_THREADS) NAME(                         \
        const T* x, const T* v0, const T* dt, const T* gleak, const T* vleak, const T* cm,     \
        const T* w, const T* sigma, const T* mu, const T* erev, const T* sw, const T* ssig,    \
        const T* smu, const T* serev, T* v_seq, int B, int Tn, int S, int N, int K, T eps,     \
        int stage_w) {                                                                         \
        ltc_scan<T>(x, v0, dt, gleak, vleak, cm, w, sigma, mu, erev, sw, ssig, smu, serev,     \
                    v_seq, B, Tn, S, N, K, eps, stage_w);                                      \
    }

NL_LTC_ENTRY(ltc_scan_f32, float)
NL_LTC_ENTRY(ltc_scan_f64, double)
