// Shared __device__ math for the neuroliquid kernels (cfc.cu, ltc.cu, lif.cu,
// encoders.cu, synapse.cu).
//
// Self-contained: NVRTC (what CuPy compiles with at run time) provides the CUDA
// math builtins without host headers, so nothing is #included here.  The loader
// (kernels/cuda_sources.py) inlines this file into each .cu before compiling, so
// CuPy's kernel cache key covers the header too.
//
// Compile-time knobs (-D):
//   NL_MAX_THREADS  upper bound of threads per block used in __launch_bounds__
//                   (default 256; kernels/launch.py never launches more).
//
// Never compiled with fast-math: the CuPy backend is tested against NumPy at
// 1e-5 (float32) and 1e-10 (float64), so expf/tanhf/erff are the IEEE-accurate ones.
#pragma once

#ifndef NL_MAX_THREADS
#define NL_MAX_THREADS 256
#endif

#define NL_DEVICE __device__ __forceinline__

namespace nl {

// Overloads instead of the generic C++ names so a float never silently runs in
// double (e.g. exp(float) promoted by a missing overload) and vice versa.
NL_DEVICE float exp_(float x) { return expf(x); }
NL_DEVICE double exp_(double x) { return exp(x); }
NL_DEVICE float tanh_(float x) { return tanhf(x); }
NL_DEVICE double tanh_(double x) { return tanh(x); }
NL_DEVICE float erf_(float x) { return erff(x); }
NL_DEVICE double erf_(double x) { return erf(x); }
NL_DEVICE float abs_(float x) { return fabsf(x); }
NL_DEVICE double abs_(double x) { return fabs(x); }

// Rounded multiply / add that the compiler may not contract into an FMA: used
// where a spike or event decision (a comparison) follows, so the value compared
// is bit-identical to NumPy's separately rounded a*b + c.
NL_DEVICE float mul_rn(float a, float b) { return __fmul_rn(a, b); }
NL_DEVICE double mul_rn(double a, double b) { return __dmul_rn(a, b); }
NL_DEVICE float add_rn(float a, float b) { return __fadd_rn(a, b); }
NL_DEVICE double add_rn(double a, double b) { return __dadd_rn(a, b); }
NL_DEVICE float sub_rn(float a, float b) { return __fsub_rn(a, b); }
NL_DEVICE double sub_rn(double a, double b) { return __dsub_rn(a, b); }

template <typename T>
NL_DEVICE T sigmoid(T x) {
    // 1 / (1 + e^-x), written to never overflow: for x < 0 use e^x / (1 + e^x).
    if (x >= T(0)) {
        return T(1) / (T(1) + exp_(-x));
    }
    const T e = exp_(x);
    return e / (T(1) + e);
}

template <typename T>
NL_DEVICE T lecun_tanh(T x) {
    // ncps: 1.7159 * tanh(0.666 * x); the constants round to T like NumPy's
    // python-scalar * array (NEP 50).
    return T(1.7159) * tanh_(T(0.666) * x);
}

template <typename T>
NL_DEVICE T relu(T x) { return x > T(0) ? x : T(0); }

template <typename T>
NL_DEVICE T silu(T x) { return x * sigmoid(x); }

template <typename T>
NL_DEVICE T gelu(T x) {
    // Exact (erf) form, torch.nn.GELU(approximate="none").
    return T(0.5) * x * (T(1) + erf_(x * T(0.70710678118654752440)));
}

// Activation codes shared with kernels/cuda_sources.py (ACTIVATION_CODES).
enum Activation { ACT_LECUN_TANH = 0, ACT_TANH = 1, ACT_RELU = 2, ACT_SILU = 3, ACT_GELU = 4 };

template <typename T>
NL_DEVICE T activate(T x, int act) {
    // `act` is uniform across the launch, so this switch never diverges a warp.
    switch (act) {
        case ACT_TANH: return tanh_(x);
        case ACT_RELU: return relu(x);
        case ACT_SILU: return silu(x);
        case ACT_GELU: return gelu(x);
        default: return lecun_tanh(x);
    }
}

// Dynamic shared memory, typed.  One extern array per translation unit, aligned
// for double; every kernel carves its buffers out of it in units of T.
extern __shared__ __align__(16) unsigned char nl_smem_raw[];

template <typename T>
NL_DEVICE T* smem() { return reinterpret_cast<T*>(nl_smem_raw); }

}  // namespace nl
