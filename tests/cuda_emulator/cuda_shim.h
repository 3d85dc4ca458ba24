// The CUDA device-code subset that kernels/cuda/*.cu use, for host (g++) emulation.
// Force-included (g++ -include) ahead of every kernel translation unit by the fake
// cupy (fake/cupy/__init__.py); the runtime behind it is harness.cpp.  What the
// emulation proves and what it cannot: README.md.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------- built-in variables
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
// Set by the harness before it resumes each emulated CUDA thread.
extern dim3 threadIdx, blockIdx, blockDim, gridDim;

// A barrier over the threads of the running block (harness.cpp).
void __syncthreads();

// ---------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
// Only `extern __shared__ T name[];` (dynamic shared memory) is used; the harness
// defines that array, one per block at a time.
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

// ---------------------------------------------------------------- intrinsics
// Kernels are compiled with -ffp-contract=off for x86-64 without FMA, so every
// multiply and add is rounded on its own, like NumPy; these are the plain ops.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }

// ---------------------------------------------------------------- launching
// NL_EMU_EXPORT(kernel) defines `int nl_emu_launch_<kernel>(gx, gy, bx, smem, args)`,
// where args is CUDA's kernelParams convention (one pointer per argument value), and
// `const char* nl_emu_signature_<kernel>()`, the kernel's parameter type codes.
namespace nl_emu {

using Body = void (*)(void* ctx);

// One letter per kernel parameter, checked by the fake cupy against the arguments it
// is given: i/f/d for int/float/double values, I/F/D/B for pointers to int, float,
// double and one-byte (bool, unsigned char) data, ? for anything else.
template <typename T>
constexpr char type_code() {
    if constexpr (std::is_pointer_v<T>) {
        using E = std::remove_cv_t<std::remove_pointer_t<T>>;
        if constexpr (std::is_same_v<E, int>) return 'I';
        if constexpr (std::is_same_v<E, float>) return 'F';
        if constexpr (std::is_same_v<E, double>) return 'D';
        if constexpr (sizeof(E) == 1) return 'B';
        return '?';
    } else {
        if constexpr (std::is_same_v<T, int>) return 'i';
        if constexpr (std::is_same_v<T, float>) return 'f';
        if constexpr (std::is_same_v<T, double>) return 'd';
        return '?';
    }
}

template <typename... A>
const char* signature(void (*)(A...)) {
    static constexpr char codes[] = {type_code<std::remove_cvref_t<A>>()..., '\0'};
    return codes;
}

// harness.cpp: runs body(ctx) once per thread of every block; 0 on success, else
// nonzero after printing why to stderr.
int launch(const char* name, int gx, int gy, int bx, long long smem_bytes, Body body, void* ctx);

template <typename... A, std::size_t... I>
void invoke(void (*fn)(A...), void** args, std::index_sequence<I...>) {
    fn(*static_cast<std::remove_cvref_t<A>*>(args[I])...);
}

template <typename... A>
int launch_kernel(const char* name, void (*fn)(A...), int gx, int gy, int bx, long long smem,
                  void** args) {
    struct Ctx {
        void (*fn)(A...);
        void** args;
    } ctx{fn, args};
    const Body body = [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        invoke(c->fn, c->args, std::index_sequence_for<A...>{});
    };
    return launch(name, gx, gy, bx, smem, body, &ctx);
}

}  // namespace nl_emu

#define NL_EMU_EXPORT(name)                                                              \
    extern "C" const char* nl_emu_signature_##name() { return nl_emu::signature(&name); } \
    extern "C" int nl_emu_launch_##name(int gx, int gy, int bx, long long smem,          \
                                        void** args) {                                   \
        return nl_emu::launch_kernel(#name, &name, gx, gy, bx, smem, args);              \
    }
