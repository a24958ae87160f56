// collbench_common.cuh — types, exact arithmetic, 16-byte packs and the layout constants shared by
// reduce.cu, ipc_collectives.cu, interp.cu and compress.cu.
//
// The sources compile both with nvcc (CI compile checks, sm_80/sm_90) and with NVRTC through CuPy's
// RawModule (run time). They therefore include NOTHING: every helper below is either a compiler
// builtin (threadIdx, __syncthreads) or inline PTX. That keeps NVRTC free of include-path problems
// and makes the arithmetic independent of compiler flags: CuPy appends -ftz=true to every NVRTC
// compile, which would flush float32 subnormals to zero in plain C++ arithmetic; the inline-PTX
// add/mul/div/setp below carry no .ftz modifier, so results are IEEE-exact and match numpy bit for
// bit.
//
// Python reads the `#define COLLBENCH_*` integer constants of this file (collbench/gpu/kernel_sources.py),
// so the kernels are the single source of truth for buffer layouts.
#pragma once

// ---------------------------------------------------------------------------------------------
// Layout constants (plain integer literals: Python parses them with a regular expression).
// ---------------------------------------------------------------------------------------------
#define COLLBENCH_MAX_RANKS 8          // ranks per IPC communicator (one node)
#define COLLBENCH_MAX_BLOCKS 256       // blocks per IPC kernel launch (each has its own flags)
#define COLLBENCH_IPC_THREADS 512      // threads per block of every IPC kernel (launch bounds)
// Signal buffer (uint32 words), one per rank, IPC-shared:
#define COLLBENCH_SIG_FLAGS_WORD 0       // flags[block][src_rank], written by peers
#define COLLBENCH_SIG_COUNTERS_WORD 2048 // epoch counter per block, private to the owner
#define COLLBENCH_SIG_ERROR_WORD 2304    // error record (COLLBENCH_ERR_WORDS words)
#define COLLBENCH_ERR_WORDS 16
#define COLLBENCH_SIG_BYTES 16384        // allocation size of one signal buffer
// Communicator descriptor (device struct CommDesc below), in bytes:
#define COLLBENCH_DESC_BYTES 264
// Error codes written to the error record's word 0:
#define COLLBENCH_ERR_NONE 0
#define COLLBENCH_ERR_TIMEOUT 1
#define COLLBENCH_ERR_BAD_LAUNCH 2
// Kernel ids written to the error record's word 1:
#define COLLBENCH_KID_ONE_SHOT 1
#define COLLBENCH_KID_TWO_SHOT 2
#define COLLBENCH_KID_ALLGATHER 3
#define COLLBENCH_KID_REDUCE_SCATTER 4
// Reduction op ids (also used in kernel names: reduce_<op>_<dtype>).
#define COLLBENCH_OP_SUM 0
#define COLLBENCH_OP_PROD 1
#define COLLBENCH_OP_MAX 2
#define COLLBENCH_OP_MIN 3
#define COLLBENCH_OP_AVG 4  // IPC kernels only: sum, then divide by nranks before the final rounding
// Dtype ids: a module may be compiled for one dtype only (-DCOLLBENCH_ONLY_DTYPE=<id>) so that the
// first use of a dtype compiles a few kernels rather than all of them.
#define COLLBENCH_DT_INT8 1
#define COLLBENCH_DT_UINT8 2
#define COLLBENCH_DT_INT32 3
#define COLLBENCH_DT_UINT32 4
#define COLLBENCH_DT_INT64 5
#define COLLBENCH_DT_UINT64 6
#define COLLBENCH_DT_FLOAT16 7
#define COLLBENCH_DT_BFLOAT16 8
#define COLLBENCH_DT_FLOAT32 9
#define COLLBENCH_DT_FLOAT64 10

#ifndef COLLBENCH_ONLY_DTYPE
#define COLLBENCH_ONLY_DTYPE 0  // 0: compile every dtype
#endif
#define COLLBENCH_WANT_DTYPE(id) (COLLBENCH_ONLY_DTYPE == 0 || COLLBENCH_ONLY_DTYPE == (id))

static_assert(COLLBENCH_SIG_COUNTERS_WORD >= COLLBENCH_MAX_BLOCKS * COLLBENCH_MAX_RANKS, "flags overlap");
static_assert(COLLBENCH_SIG_ERROR_WORD >= COLLBENCH_SIG_COUNTERS_WORD + COLLBENCH_MAX_BLOCKS, "counters overlap");
static_assert((COLLBENCH_SIG_ERROR_WORD + COLLBENCH_ERR_WORDS) * 4 <= COLLBENCH_SIG_BYTES, "signal too small");

namespace cb {

typedef signed char i8;
typedef unsigned char u8;
typedef unsigned short u16;
typedef int i32;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

static_assert(sizeof(i64) == 8 && sizeof(u64) == 8 && sizeof(void*) == 8, "64-bit device code expected");

// 16-bit floating types are stored as their bit patterns; arithmetic happens in float32.
struct half_t { u16 bits; };
struct bf16_t { u16 bits; };

// ---------------------------------------------------------------------------------------------
// Bit casts and conversions (inline PTX: no headers, no flag dependence).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float u32_as_f32(u32 u) { float f; asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u)); return f; }
__device__ __forceinline__ u32 f32_as_u32(float f) { u32 u; asm("mov.b32 %0, %1;" : "=r"(u) : "f"(f)); return u; }

__device__ __forceinline__ float half_to_f32(u16 h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));  // exact
  return f;
}
__device__ __forceinline__ u16 f32_to_half(float f) {
  u16 h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));  // round to nearest even, IEEE overflow/subnormals
  return h;
}
__device__ __forceinline__ float bf16_to_f32(u16 b) { return u32_as_f32(static_cast<u32>(b) << 16); }  // exact
__device__ __forceinline__ u16 f32_to_bf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  u16 b;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b) : "f"(f));
  return b;
#else
  // Round to nearest even by integer arithmetic (pre-Ampere has no cvt to bf16); NaN stays NaN.
  u32 u = f32_as_u32(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<u16>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<u16>(u >> 16);
#endif
}

// ---------------------------------------------------------------------------------------------
// IEEE-exact float32/float64 arithmetic (no .ftz, no FMA contraction: one rounding per op).
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float f32_add(float a, float b) { float r; asm("add.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ float f32_mul(float a, float b) { float r; asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ float f32_div(float a, float b) { float r; asm("div.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b)); return r; }
__device__ __forceinline__ bool f32_ge(float a, float b) {
  u32 r;
  asm("{ .reg .pred p; setp.ge.f32 p, %1, %2; selp.u32 %0, 1, 0, p; }" : "=r"(r) : "f"(a), "f"(b));
  return r != 0;
}
__device__ __forceinline__ bool f32_le(float a, float b) {
  u32 r;
  asm("{ .reg .pred p; setp.le.f32 p, %1, %2; selp.u32 %0, 1, 0, p; }" : "=r"(r) : "f"(a), "f"(b));
  return r != 0;
}
__device__ __forceinline__ bool f32_isnan(float a) {
  u32 r;
  asm("{ .reg .pred p; setp.nan.f32 p, %1, %1; selp.u32 %0, 1, 0, p; }" : "=r"(r) : "f"(a));
  return r != 0;
}
__device__ __forceinline__ double f64_add(double a, double b) { double r; asm("add.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }
__device__ __forceinline__ double f64_mul(double a, double b) { double r; asm("mul.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }
__device__ __forceinline__ double f64_div(double a, double b) { double r; asm("div.rn.f64 %0, %1, %2;" : "=d"(r) : "d"(a), "d"(b)); return r; }

// ---------------------------------------------------------------------------------------------
// Element traits: Acc is the arithmetic type; load/store convert between storage and Acc.
// ---------------------------------------------------------------------------------------------
template <typename T> struct Elem;
#define CB_INT_ELEM(T, ACC, IS_INT)                                               \
  template <> struct Elem<T> {                                                    \
    typedef ACC Acc;                                                              \
    static constexpr bool kIsInt = IS_INT;                                        \
    static __device__ __forceinline__ Acc load(T v) { return static_cast<Acc>(v); } \
    static __device__ __forceinline__ T store(Acc v) { return static_cast<T>(v); }  \
  };
CB_INT_ELEM(i8, i32, true)
CB_INT_ELEM(u8, u32, true)
CB_INT_ELEM(i32, i32, true)
CB_INT_ELEM(u32, u32, true)
CB_INT_ELEM(i64, i64, true)
CB_INT_ELEM(u64, u64, true)
CB_INT_ELEM(float, float, false)
CB_INT_ELEM(double, double, false)
#undef CB_INT_ELEM
template <> struct Elem<half_t> {
  typedef float Acc;
  static constexpr bool kIsInt = false;
  static __device__ __forceinline__ Acc load(half_t v) { return half_to_f32(v.bits); }
  static __device__ __forceinline__ half_t store(Acc v) { half_t h; h.bits = f32_to_half(v); return h; }
};
template <> struct Elem<bf16_t> {
  typedef float Acc;
  static constexpr bool kIsInt = false;
  static __device__ __forceinline__ Acc load(bf16_t v) { return bf16_to_f32(v.bits); }
  static __device__ __forceinline__ bf16_t store(Acc v) { bf16_t h; h.bits = f32_to_bf16(v); return h; }
};

// Integer sum/prod wrap modulo 2^bits like numpy: computed in the unsigned type (signed overflow
// would be undefined behaviour in C++), converted back (two's complement, as nvcc/NVRTC define it).
// Truncating an i32 accumulator to i8 at the end gives the same result as wrapping at every step.
__device__ __forceinline__ i32 op_add(i32 a, i32 b) { return static_cast<i32>(static_cast<u32>(a) + static_cast<u32>(b)); }
__device__ __forceinline__ u32 op_add(u32 a, u32 b) { return a + b; }
__device__ __forceinline__ i64 op_add(i64 a, i64 b) { return static_cast<i64>(static_cast<u64>(a) + static_cast<u64>(b)); }
__device__ __forceinline__ u64 op_add(u64 a, u64 b) { return a + b; }
__device__ __forceinline__ float op_add(float a, float b) { return f32_add(a, b); }
__device__ __forceinline__ double op_add(double a, double b) { return f64_add(a, b); }
__device__ __forceinline__ i32 op_mul(i32 a, i32 b) { return static_cast<i32>(static_cast<u32>(a) * static_cast<u32>(b)); }
__device__ __forceinline__ u32 op_mul(u32 a, u32 b) { return a * b; }
__device__ __forceinline__ i64 op_mul(i64 a, i64 b) { return static_cast<i64>(static_cast<u64>(a) * static_cast<u64>(b)); }
__device__ __forceinline__ u64 op_mul(u64 a, u64 b) { return a * b; }
__device__ __forceinline__ float op_mul(float a, float b) { return f32_mul(a, b); }
__device__ __forceinline__ double op_mul(double a, double b) { return f64_mul(a, b); }
// max/min follow numpy.maximum/minimum: a NaN operand propagates; otherwise (a >= b) ? a : b.
template <typename A> __device__ __forceinline__ A op_max(A a, A b) { return a >= b ? a : b; }
template <typename A> __device__ __forceinline__ A op_min(A a, A b) { return a <= b ? a : b; }
template <> __device__ __forceinline__ float op_max<float>(float a, float b) { return (f32_ge(a, b) || f32_isnan(a)) ? a : b; }
template <> __device__ __forceinline__ float op_min<float>(float a, float b) { return (f32_le(a, b) || f32_isnan(a)) ? a : b; }
template <> __device__ __forceinline__ double op_max<double>(double a, double b) { return (a >= b || a != a) ? a : b; }
template <> __device__ __forceinline__ double op_min<double>(double a, double b) { return (a <= b || a != a) ? a : b; }
// Division by the rank count for avg: integers truncate toward zero (C semantics), floats round once.
__device__ __forceinline__ i32 op_divn(i32 a, int n) { return a / n; }
__device__ __forceinline__ u32 op_divn(u32 a, int n) { return a / static_cast<u32>(n); }
__device__ __forceinline__ i64 op_divn(i64 a, int n) { return a / static_cast<i64>(n); }
__device__ __forceinline__ u64 op_divn(u64 a, int n) { return a / static_cast<u64>(n); }
__device__ __forceinline__ float op_divn(float a, int n) { return f32_div(a, static_cast<float>(n)); }
__device__ __forceinline__ double op_divn(double a, int n) { return f64_div(a, static_cast<double>(n)); }

// Combine op: OP is a COLLBENCH_OP_* id; AVG combines as SUM (the division happens once, at the end).
template <int OP, typename A> __device__ __forceinline__ A combine(A a, A b) {
  if (OP == COLLBENCH_OP_PROD) return op_mul(a, b);
  if (OP == COLLBENCH_OP_MAX) return op_max(a, b);
  if (OP == COLLBENCH_OP_MIN) return op_min(a, b);
  return op_add(a, b);  // SUM and AVG
}

// ---------------------------------------------------------------------------------------------
// 16-byte packs: explicit ld/st.v4 so every access is one 128-bit transaction.
// ---------------------------------------------------------------------------------------------
struct __align__(16) Pack { u32 x, y, z, w; };

// Plain global load: for buffers of this process (the weak load may be cached in L1).
__device__ __forceinline__ Pack ld_pack(const void* p) {
  Pack v;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// L2-only load (.cg): for data another process wrote in this or an earlier kernel. L1 is not
// coherent, so a line cached by an earlier launch must never be served; .cg bypasses L1.
__device__ __forceinline__ Pack ld_pack_cg(const void* p) {
  Pack v;
  asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_pack(void* p, const Pack& v) {
  asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}
template <bool CG> __device__ __forceinline__ Pack load_pack(const void* p) { return CG ? ld_pack_cg(p) : ld_pack(p); }

// Scalar loads by size; the .cg variants for cross-process data (see ld_pack_cg). PTX has no
// 8-bit registers, so bytes travel in 16-bit ones.
template <bool CG> __device__ __forceinline__ u8 load_u8(const void* p) {
  u16 r;
  if (CG) asm volatile("ld.global.cg.u8 %0, [%1];" : "=h"(r) : "l"(p) : "memory");
  else asm volatile("ld.global.u8 %0, [%1];" : "=h"(r) : "l"(p) : "memory");
  return static_cast<u8>(r);
}
template <bool CG> __device__ __forceinline__ u16 load_u16(const void* p) {
  u16 r;
  if (CG) asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(r) : "l"(p) : "memory");
  else asm volatile("ld.global.u16 %0, [%1];" : "=h"(r) : "l"(p) : "memory");
  return r;
}
template <bool CG> __device__ __forceinline__ u32 load_u32(const void* p) {
  u32 r;
  if (CG) asm volatile("ld.global.cg.u32 %0, [%1];" : "=r"(r) : "l"(p) : "memory");
  else asm volatile("ld.global.u32 %0, [%1];" : "=r"(r) : "l"(p) : "memory");
  return r;
}
template <bool CG> __device__ __forceinline__ u64 load_u64(const void* p) {
  u64 r;
  if (CG) asm volatile("ld.global.cg.u64 %0, [%1];" : "=l"(r) : "l"(p) : "memory");
  else asm volatile("ld.global.u64 %0, [%1];" : "=l"(r) : "l"(p) : "memory");
  return r;
}

// Element load by size (type punning through the unsigned bit pattern).
template <typename T, bool CG> struct ElemIO {
  static_assert(sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8, "element size");
  static __device__ __forceinline__ T load(const T* p) {
    union { T t; u8 b1; u16 b2; u32 b4; u64 b8; } u;
    if (sizeof(T) == 1) u.b1 = load_u8<CG>(p);
    else if (sizeof(T) == 2) u.b2 = load_u16<CG>(p);
    else if (sizeof(T) == 4) u.b4 = load_u32<CG>(p);
    else u.b8 = load_u64<CG>(p);
    return u.t;
  }
};

// A pack viewed as V elements of T.
template <typename T> union PackOf {
  static constexpr int V = 16 / sizeof(T);
  Pack p;
  T e[16 / sizeof(T)];
  __device__ __forceinline__ PackOf() {}
};

__device__ __forceinline__ u64 addr_of(const void* p) { return reinterpret_cast<u64>(p); }

// ---------------------------------------------------------------------------------------------
// Work partition shared by every kernel (the IPC kernels rely on it being identical in all
// phases and on all ranks: block b always owns the same packs of a range, and block 0 owns the
// scalar head and tail).
// ---------------------------------------------------------------------------------------------

// Final value of an accumulator: divided by divn when divn > 0 (avg). Integers first wrap to T
// (an int8 sum accumulated in an int must wrap to 8 bits before the division, as the sum of the
// dtype would); floats divide the unrounded float32/float64 accumulator (one rounding in total).
template <typename T>
__device__ __forceinline__ typename Elem<T>::Acc finish(typename Elem<T>::Acc a, int divn) {
  if (divn > 0) {
    if constexpr (Elem<T>::kIsInt) a = Elem<T>::load(Elem<T>::store(a));
    a = op_divn(a, divn);
  }
  return a;
}

// One element of reduce_range (head, tail and the misaligned path). A function rather than a
// lambda: ptxas may emit a lambda called from three places as a real call with a stack frame.
template <typename T, int OP, bool CG>
__device__ __forceinline__ void reduce_one(T* dst, const T* const* src, int nsrc, u64 i, int divn) {
  typedef typename Elem<T>::Acc Acc;
  Acc acc = Elem<T>::load(ElemIO<T, CG>::load(src[0] + i));
#pragma unroll 1
  for (int k = 1; k < nsrc; ++k) acc = combine<OP>(acc, Elem<T>::load(ElemIO<T, CG>::load(src[k] + i)));
  dst[i] = Elem<T>::store(finish<T>(acc, divn));
}

// dst[i] = src[0][i] op src[1][i] op ... op src[nsrc-1][i] (fixed order, so every rank computes
// bit-identical results) for i in [0, n); when divn > 0 the accumulator is divided by divn before
// its single rounding to T (fused avg). CG selects L2-only loads for sources written by other
// processes. Every thread of the grid calls this with the same arguments. dst may equal a source
// exactly (each thread reads a position before writing it), but must not overlap one otherwise.
//
// Partition: when dst and all sources share their address modulo 16 (and it is a multiple of
// sizeof(T)), the leading elements up to the first 16-byte boundary ("head") and the elements
// after the last whole pack ("tail") are done by block 0, the packs grid-stride: pack p by global
// thread p mod (grid*block). Otherwise every element is done scalar, grid-stride.
template <typename T, int OP, bool CG, int MAXU = 4>
__device__ __forceinline__ void reduce_range(T* dst, const T* const* src, int nsrc, u64 n, int divn) {
  typedef typename Elem<T>::Acc Acc;
  constexpr int V = 16 / sizeof(T);
  // Packs in flight per thread: enough loads outstanding to cover memory latency, while keeping
  // the U*V accumulators (16 at most) in registers.
  // MAXU caps it where a kernel's register budget is tighter (512-thread IPC kernels).
  constexpr int U0 = V >= 16 ? 1 : (V >= 8 ? 2 : 4);
  constexpr int U = U0 < MAXU ? U0 : MAXU;
  if (n == 0) return;
  const u64 tid = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x;
  const u64 nthreads = static_cast<u64>(gridDim.x) * blockDim.x;

  const u64 mis = addr_of(dst) & 15;
  bool vec = (mis % sizeof(T)) == 0;
  for (int k = 0; k < nsrc; ++k) vec = vec && ((addr_of(src[k]) & 15) == mis);

  if (!vec) {
    for (u64 i = tid; i < n; i += nthreads) reduce_one<T, OP, CG>(dst, src, nsrc, i, divn);
    return;
  }
  u64 head = mis ? (16 - mis) / sizeof(T) : 0;
  if (head > n) head = n;
  if (blockIdx.x == 0)
    for (u64 i = threadIdx.x; i < head; i += blockDim.x) reduce_one<T, OP, CG>(dst, src, nsrc, i, divn);

  const u64 npacks = (n - head) / V;
  T* const d = dst + head;
  u64 p = tid;
  for (; p + (U - 1) * nthreads < npacks; p += U * nthreads) {
    Acc acc[U][V];
    PackOf<T> v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) v[u].p = load_pack<CG>(src[0] + head + (p + u * nthreads) * V);
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int e = 0; e < V; ++e) acc[u][e] = Elem<T>::load(v[u].e[e]);
    // Sources one at a time (not unrolled): keeps U packs, not U*nsrc, in registers.
#pragma unroll 1
    for (int k = 1; k < nsrc; ++k) {
#pragma unroll
      for (int u = 0; u < U; ++u) v[u].p = load_pack<CG>(src[k] + head + (p + u * nthreads) * V);
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[u][e] = combine<OP>(acc[u][e], Elem<T>::load(v[u].e[e]));
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        v[u].e[e] = Elem<T>::store(finish<T>(acc[u][e], divn));
      }
      st_pack(d + (p + u * nthreads) * V, v[u].p);
    }
  }
  for (; p < npacks; p += nthreads) {
    Acc acc[V];
    PackOf<T> v;
    v.p = load_pack<CG>(src[0] + head + p * V);
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = Elem<T>::load(v.e[e]);
#pragma unroll 1
    for (int k = 1; k < nsrc; ++k) {
      v.p = load_pack<CG>(src[k] + head + p * V);
#pragma unroll
      for (int e = 0; e < V; ++e) acc[e] = combine<OP>(acc[e], Elem<T>::load(v.e[e]));
    }
#pragma unroll
    for (int e = 0; e < V; ++e) {
      v.e[e] = Elem<T>::store(finish<T>(acc[e], divn));
    }
    st_pack(d + p * V, v.p);
  }
  if (blockIdx.x == 0)
    for (u64 i = head + npacks * V + threadIdx.x; i < n; i += blockDim.x) reduce_one<T, OP, CG>(dst, src, nsrc, i, divn);
}

// Bit-exact copy of nbytes from src to dst with the same partition rule as reduce_range: packs
// grid-stride, scalar head/tail bytes in block 0. When src and dst are not mutually 16-byte
// aligned it falls back to 4-byte words (if mutually 4-aligned) or bytes, grid-stride.
template <bool CG, int U = 4>
__device__ __forceinline__ void copy_range(void* dst_v, const void* src_v, u64 nbytes) {
  if (nbytes == 0) return;
  u8* dst = static_cast<u8*>(dst_v);
  const u8* src = static_cast<const u8*>(src_v);
  const u64 tid = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x;
  const u64 nthreads = static_cast<u64>(gridDim.x) * blockDim.x;
  const u64 mis = addr_of(dst) & 15;
  if ((addr_of(src) & 15) == mis) {
    u64 head = mis ? 16 - mis : 0;
    if (head > nbytes) head = nbytes;
    if (blockIdx.x == 0)
      for (u64 i = threadIdx.x; i < head; i += blockDim.x) dst[i] = load_u8<CG>(src + i);
    const u64 npacks = (nbytes - head) / 16;
    u64 p = tid;
    for (; p + (U - 1) * nthreads < npacks; p += U * nthreads) {
      Pack v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) v[u] = load_pack<CG>(src + head + (p + u * nthreads) * 16);
#pragma unroll
      for (int u = 0; u < U; ++u) st_pack(dst + head + (p + u * nthreads) * 16, v[u]);
    }
    for (; p < npacks; p += nthreads) st_pack(dst + head + p * 16, load_pack<CG>(src + head + p * 16));
    if (blockIdx.x == 0)
      for (u64 i = head + npacks * 16 + threadIdx.x; i < nbytes; i += blockDim.x) dst[i] = load_u8<CG>(src + i);
    return;
  }
  if ((addr_of(src) & 3) == (addr_of(dst) & 3)) {
    u64 head = (4 - (addr_of(dst) & 3)) & 3;
    if (head > nbytes) head = nbytes;
    if (blockIdx.x == 0)
      for (u64 i = threadIdx.x; i < head; i += blockDim.x) dst[i] = load_u8<CG>(src + i);
    const u64 nwords = (nbytes - head) / 4;
    for (u64 w = tid; w < nwords; w += nthreads)
      *reinterpret_cast<u32*>(dst + head + w * 4) = load_u32<CG>(src + head + w * 4);
    if (blockIdx.x == 0)
      for (u64 i = head + nwords * 4 + threadIdx.x; i < nbytes; i += blockDim.x) dst[i] = load_u8<CG>(src + i);
    return;
  }
  for (u64 i = tid; i < nbytes; i += nthreads) dst[i] = load_u8<CG>(src + i);
}

}  // namespace cb

// Invoke M(T, name, id) for every dtype this module is compiled for. `name` is the collbench dtype
// name used in kernel names; bfloat16/float16 are bit-pattern structs.
#define CB_FOR_EACH_DTYPE(M)              \
  CB_IF_DTYPE_INT8(M(cb::i8, int8))         \
  CB_IF_DTYPE_UINT8(M(cb::u8, uint8))       \
  CB_IF_DTYPE_INT32(M(cb::i32, int32))      \
  CB_IF_DTYPE_UINT32(M(cb::u32, uint32))    \
  CB_IF_DTYPE_INT64(M(cb::i64, int64))      \
  CB_IF_DTYPE_UINT64(M(cb::u64, uint64))    \
  CB_IF_DTYPE_FLOAT16(M(cb::half_t, float16)) \
  CB_IF_DTYPE_BFLOAT16(M(cb::bf16_t, bfloat16)) \
  CB_IF_DTYPE_FLOAT32(M(float, float32))    \
  CB_IF_DTYPE_FLOAT64(M(double, float64))

// Per-dtype switches (preprocessor conditionals cannot live inside a macro body, so each is a
// macro that expands to its argument or to nothing).
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_INT8)
#define CB_IF_DTYPE_INT8(x) x
#else
#define CB_IF_DTYPE_INT8(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_UINT8)
#define CB_IF_DTYPE_UINT8(x) x
#else
#define CB_IF_DTYPE_UINT8(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_INT32)
#define CB_IF_DTYPE_INT32(x) x
#else
#define CB_IF_DTYPE_INT32(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_UINT32)
#define CB_IF_DTYPE_UINT32(x) x
#else
#define CB_IF_DTYPE_UINT32(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_INT64)
#define CB_IF_DTYPE_INT64(x) x
#else
#define CB_IF_DTYPE_INT64(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_UINT64)
#define CB_IF_DTYPE_UINT64(x) x
#else
#define CB_IF_DTYPE_UINT64(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_FLOAT16)
#define CB_IF_DTYPE_FLOAT16(x) x
#else
#define CB_IF_DTYPE_FLOAT16(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_BFLOAT16)
#define CB_IF_DTYPE_BFLOAT16(x) x
#else
#define CB_IF_DTYPE_BFLOAT16(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_FLOAT32)
#define CB_IF_DTYPE_FLOAT32(x) x
#else
#define CB_IF_DTYPE_FLOAT32(x)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_FLOAT64)
#define CB_IF_DTYPE_FLOAT64(x) x
#else
#define CB_IF_DTYPE_FLOAT64(x)
#endif

// ---------------------------------------------------------------------------------------------
// Memory ordering, flags and time for the kernels that wait on other ranks (ipc_collectives.cu,
// interp.cu): inline PTX, system scope where a peer GPU reads or writes the word.
// ---------------------------------------------------------------------------------------------
namespace cb {

// The IpcCommunicator's descriptor (collbench/gpu/ipc.py writes it): every rank's buffers.
struct CommDesc {
  u64 in[COLLBENCH_MAX_RANKS];
  u64 out[COLLBENCH_MAX_RANKS];
  u64 scratch[COLLBENCH_MAX_RANKS];
  u64 sig[COLLBENCH_MAX_RANKS];
  i32 rank;
  i32 nranks;
};
static_assert(sizeof(CommDesc) == COLLBENCH_DESC_BYTES, "CommDesc layout changed: update ipc.py");

__device__ __forceinline__ u64 global_timer_ns() {
  u64 t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ void st_release_sys(u32* p, u32 v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ u32 ld_acquire_sys(const u32* p) {
  u32 v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ u32 ld_acquire_gpu(const u32* p) {
  u32 v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void red_add_release_gpu(u32* p, u32 v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ u32 ld_volatile(const u32* p) {
  u32 v;
  asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_volatile(u32* p, u32 v) {
  asm volatile("st.volatile.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ u32 atom_cas(u32* p, u32 cmp, u32 val) {
  u32 old;
  asm volatile("atom.global.cas.b32 %0, [%1], %2, %3;" : "=r"(old) : "l"(p), "r"(cmp), "r"(val) : "memory");
  return old;
}
__device__ __forceinline__ void fence_acq_rel_sys() { asm volatile("fence.acq_rel.sys;" ::: "memory"); }
__device__ __forceinline__ void nanosleep_ns(u32 ns) { asm volatile("nanosleep.u32 %0;" ::"r"(ns)); }

}  // namespace cb
