// compress.cu — GPU kernels of the compressed allreduces (collbench/compress): block quantization
// (int8 with a per-block absmax scale, fp8 e4m3) and deterministic top-k selection, written to give
// bit for bit what the numpy reference gives (collbench/compress/quantize.py and sparse.py).
//
// Entry points (extern "C"), <fmt> in int8 fp8, <dtype> in float16 bfloat16 float32:
//   compress_scales_<fmt>_<dtype>(const T* x, float* scales, u64 n, u32 block)
//       one CUDA block per quantization block: scales[b] = absmax / qmax rounded up (div.rp), 1 for
//       an all-zero block. Launch with gridDim.x = ceil(n / block) (any blockDim up to 1024, a
//       power of two).
//   compress_quantize_<fmt>_<dtype>(const T* x, const float* scales, u8* codes, u64 n, u32 block)
//       codes[i] = encode(clamp(x[i] / scales[i / block], ±qmax)): int8 rounds to nearest even,
//       fp8 e4m3 (no inf, max 448) to nearest even, subnormals included. Grid-stride.
//   compress_dequantize_<fmt>_<dtype>(const u8* codes, const float* scales, T* out, u64 n, u32 block)
//       out[i] = decode(codes[i]) * scale, rounded once to T.
//   compress_dequantize_add_<fmt>(const u8* codes, const float* scales, float* acc, u64 n, u32 block)
//       acc[i] = acc[i] + decode(codes[i]) * scale (float32; the reduce-scatter hop of quant_ring).
//   compress_topk_hist_<dtype>(const T* x, u64 n, u32 prefix, u32 known, u32 shift, u32* hist)
//       radix select, one pass: hist[d] += #elements whose magnitude key k has (k & known) == prefix
//       and ((k >> shift) & 255) == d. Four passes (shift 24, 16, 8, 0), the host choosing the
//       digit where the count from the top reaches k, give the k-th largest key t.
//   compress_topk_count_<dtype>(const T* x, u64 n, u32 t, u32* above, u32* ties)
//       per CUDA block b (a contiguous chunk of ceil(n / gridDim.x) elements): how many keys are
//       > t and == t. The host turns them into exclusive prefix sums (above_before, ties_before).
//   compress_topk_write_<dtype>(const T* x, u64 n, u32 t, const u64* above_before,
//                               const u64* ties_before, u64 ties_allowed, i32* idx, T* val)
//       writes the selection in increasing index order: every key > t, and the first ties_allowed
//       keys == t (ties go to the lower index), element i at position
//       above_before_i + min(ties_before_i, ties_allowed). Same grid as the count kernel.
//
// The magnitude key of an element is the bit pattern of |x| as a float32 (monotone for
// non-negative floats; 16-bit types convert exactly). float64 data is not handled here (its
// quantized formats are refused, collbench/compress/options.py; its top-k would need 64-bit keys).
// Status: compiled for sm_80/sm_90 by tests/gpu/test_compile.py; no backend launches them yet (the
// compressed algorithms run on the mpi backend with host buffers: docs/compression.md).
#include "collbench_common.cuh"

#define COLLBENCH_COMPRESS_INT8_QMAX 127
#define COLLBENCH_COMPRESS_FP8_QMAX 448

namespace cb {
namespace compress {

__device__ __forceinline__ float f32_div_up(float a, float b) {  // rounded towards +infinity
  float r;
  asm("div.rp.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ i32 f32_rint(float a) {
  i32 r;
  asm("cvt.rni.s32.f32 %0, %1;" : "=r"(r) : "f"(a));
  return r;
}
__device__ __forceinline__ float f32_abs(float a) { return u32_as_f32(f32_as_u32(a) & 0x7fffffffu); }
__device__ __forceinline__ float f32_clamp(float v, float lim) {
  return f32_ge(v, lim) ? lim : (f32_le(v, -lim) ? -lim : v);
}
// Generic-address atomic add (shared or global memory), without CUDA headers.
__device__ __forceinline__ void atomic_add_u32(u32* p, u32 v) {
  asm volatile("red.add.u32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

template <typename T> __device__ __forceinline__ float load_f32(const T* p, u64 i) { return Elem<T>::load(p[i]); }
template <typename T> __device__ __forceinline__ u32 key_of(const T* x, u64 i) { return f32_as_u32(f32_abs(load_f32(x, i))); }

// -- formats ------------------------------------------------------------------------------------

struct Int8 {
  static __device__ __forceinline__ float qmax() { return static_cast<float>(COLLBENCH_COMPRESS_INT8_QMAX); }
  static __device__ __forceinline__ u8 encode(float v) {  // |v| <= 127 after the clamp
    return static_cast<u8>(static_cast<i8>(f32_rint(v)));
  }
  static __device__ __forceinline__ float decode(u8 c) { return static_cast<float>(static_cast<i8>(c)); }
};

// float8 e4m3 "fn": 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinity, 0x7f/0xff NaN,
// largest 448, subnormals m * 2^-9. Round to nearest even, like ml_dtypes' float32 -> e4m3fn.
struct Fp8 {
  static __device__ __forceinline__ float qmax() { return static_cast<float>(COLLBENCH_COMPRESS_FP8_QMAX); }
  static __device__ __forceinline__ u8 encode(float v) {  // |v| <= 448 after the clamp
    const u32 bits = f32_as_u32(v);
    const u32 sign = (bits >> 24) & 0x80u;
    const u32 mag = bits & 0x7fffffffu;
    u32 code;
    if (mag < 0x3c800000u) {                    // below 2^-6: a subnormal step of 2^-9 (8 = 2^-6)
      code = static_cast<u32>(f32_rint(f32_mul(u32_as_f32(mag), 512.0f)));
    } else {
      i32 e = static_cast<i32>(mag >> 23) - 127;   // -6 .. 8
      u32 m = (mag & 0x7fffffu) >> 20;
      const u32 rest = mag & 0xfffffu;
      if (rest > 0x80000u || (rest == 0x80000u && (m & 1u))) ++m;
      if (m == 8u) { m = 0u; ++e; }
      code = (static_cast<u32>(e + 7) << 3) | m;
    }
    return static_cast<u8>(sign | code);
  }
  static __device__ __forceinline__ float decode(u8 c) {
    const u32 e = (c >> 3) & 0xfu, m = c & 7u;
    float mag;
    if (e == 0u) mag = f32_mul(static_cast<float>(m), 0.001953125f);         // m * 2^-9, exact
    else mag = u32_as_f32(((e + 120u) << 23) | (m << 20));                    // 1.m * 2^(e-7)
    return (c & 0x80u) ? -mag : mag;
  }
};

// -- quantization -----------------------------------------------------------------------------

template <typename T, typename F>
__device__ __forceinline__ void scales_body(const T* x, float* scales, u64 n, u32 block) {
  __shared__ u32 part[1024];
  const u64 b = blockIdx.x;
  const u64 start = b * block;
  const u64 stop = start + block < n ? start + block : n;
  u32 best = 0u;                                  // magnitudes compare as unsigned bit patterns
  for (u64 i = start + threadIdx.x; i < stop; i += blockDim.x) {
    const u32 k = key_of(x, i);
    best = k > best ? k : best;
  }
  part[threadIdx.x] = best;
  __syncthreads();
  for (u32 half = blockDim.x / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half && part[threadIdx.x + half] > part[threadIdx.x]) part[threadIdx.x] = part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0 && start < n) {
    const float a = u32_as_f32(part[0]);
    scales[b] = part[0] == 0u ? 1.0f : f32_div_up(a, F::qmax());
  }
}

template <typename T, typename F>
__device__ __forceinline__ void quantize_body(const T* x, const float* scales, u8* codes, u64 n, u32 block) {
  const u64 step = static_cast<u64>(gridDim.x) * blockDim.x;
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const float v = f32_clamp(f32_div(load_f32(x, i), scales[i / block]), F::qmax());
    codes[i] = F::encode(v);
  }
}

template <typename T, typename F>
__device__ __forceinline__ void dequantize_body(const u8* codes, const float* scales, T* out, u64 n, u32 block) {
  const u64 step = static_cast<u64>(gridDim.x) * blockDim.x;
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = Elem<T>::store(f32_mul(F::decode(codes[i]), scales[i / block]));
}

template <typename F>
__device__ __forceinline__ void dequantize_add_body(const u8* codes, const float* scales, float* acc, u64 n, u32 block) {
  const u64 step = static_cast<u64>(gridDim.x) * blockDim.x;
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    acc[i] = f32_add(acc[i], f32_mul(F::decode(codes[i]), scales[i / block]));
}

// -- top-k ------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void hist_body(const T* x, u64 n, u32 prefix, u32 known, u32 shift, u32* hist) {
  __shared__ u32 local[256];
  for (u32 d = threadIdx.x; d < 256u; d += blockDim.x) local[d] = 0u;
  __syncthreads();
  const u64 step = static_cast<u64>(gridDim.x) * blockDim.x;
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const u32 k = key_of(x, i);
    if ((k & known) == prefix) atomic_add_u32(&local[(k >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (u32 d = threadIdx.x; d < 256u; d += blockDim.x)
    if (local[d]) atomic_add_u32(&hist[d], local[d]);
}

// The contiguous chunk of CUDA block b (count and write kernels must agree).
__device__ __forceinline__ void chunk_of(u64 n, u64* start, u64* stop) {
  const u64 per = (n + gridDim.x - 1) / gridDim.x;
  *start = blockIdx.x * per < n ? blockIdx.x * per : n;
  *stop = *start + per < n ? *start + per : n;
}

template <typename T>
__device__ __forceinline__ void count_body(const T* x, u64 n, u32 t, u32* above, u32* ties) {
  __shared__ u32 sums[2];
  if (threadIdx.x == 0) { sums[0] = 0u; sums[1] = 0u; }
  __syncthreads();
  u64 start, stop;
  chunk_of(n, &start, &stop);
  u32 a = 0u, e = 0u;
  for (u64 i = start + threadIdx.x; i < stop; i += blockDim.x) {
    const u32 k = key_of(x, i);
    a += k > t ? 1u : 0u;
    e += k == t ? 1u : 0u;
  }
  if (a) atomic_add_u32(&sums[0], a);
  if (e) atomic_add_u32(&sums[1], e);
  __syncthreads();
  if (threadIdx.x == 0) { above[blockIdx.x] = sums[0]; ties[blockIdx.x] = sums[1]; }
}

// Exclusive scan of one value per thread over the block (Hillis-Steele in shared memory).
__device__ __forceinline__ u32 block_exclusive_scan(u32 v, u32* buf, u32* total) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (u32 off = 1; off < blockDim.x; off <<= 1) {
    const u32 add = threadIdx.x >= off ? buf[threadIdx.x - off] : 0u;
    __syncthreads();
    buf[threadIdx.x] += add;
    __syncthreads();
  }
  const u32 inclusive = buf[threadIdx.x];
  *total = buf[blockDim.x - 1];
  __syncthreads();
  return inclusive - v;
}

template <typename T>
__device__ __forceinline__ void write_body(const T* x, u64 n, u32 t, const u64* above_before,
                                           const u64* ties_before, u64 ties_allowed, i32* idx, T* val) {
  __shared__ u32 scan_a[1024];
  __shared__ u32 scan_e[1024];
  u64 start, stop;
  chunk_of(n, &start, &stop);
  u64 a_run = above_before[blockIdx.x], e_run = ties_before[blockIdx.x];
  for (u64 tile = start; tile < stop; tile += blockDim.x) {   // tiles in index order
    const u64 i = tile + threadIdx.x;
    const u32 k = i < stop ? key_of(x, i) : 0u;
    const u32 is_a = (i < stop && k > t) ? 1u : 0u;
    const u32 is_e = (i < stop && k == t) ? 1u : 0u;
    u32 total_a, total_e;
    const u64 a_before = a_run + block_exclusive_scan(is_a, scan_a, &total_a);
    const u64 e_before = e_run + block_exclusive_scan(is_e, scan_e, &total_e);
    if (is_a || (is_e && e_before < ties_allowed)) {
      const u64 pos = a_before + (e_before < ties_allowed ? e_before : ties_allowed);
      idx[pos] = static_cast<i32>(i);
      val[pos] = x[i];
    }
    a_run += total_a;
    e_run += total_e;
  }
}

}  // namespace compress
}  // namespace cb

#define CB_COMPRESS_FMT(T, NAME, FMT, F)                                                           \
  extern "C" __global__ void __launch_bounds__(1024)                                               \
      compress_scales_##FMT##_##NAME(const T* x, float* scales, unsigned long long n, unsigned block) { \
    cb::compress::scales_body<T, F>(x, scales, n, block);                                           \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_quantize_##FMT##_##NAME(              \
      const T* x, const float* scales, unsigned char* codes, unsigned long long n, unsigned block) { \
    cb::compress::quantize_body<T, F>(x, scales, codes, n, block);                                  \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_dequantize_##FMT##_##NAME(            \
      const unsigned char* codes, const float* scales, T* out, unsigned long long n, unsigned block) { \
    cb::compress::dequantize_body<T, F>(codes, scales, out, n, block);                              \
  }

#define CB_COMPRESS_DTYPE(T, NAME)                                                                 \
  CB_COMPRESS_FMT(T, NAME, int8, cb::compress::Int8)                                               \
  CB_COMPRESS_FMT(T, NAME, fp8, cb::compress::Fp8)                                                 \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_hist_##NAME(                    \
      const T* x, unsigned long long n, unsigned prefix, unsigned known, unsigned shift, unsigned* hist) { \
    cb::compress::hist_body<T>(x, n, prefix, known, shift, hist);                                   \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_count_##NAME(                   \
      const T* x, unsigned long long n, unsigned t, unsigned* above, unsigned* ties) {             \
    cb::compress::count_body<T>(x, n, t, above, ties);                                              \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_write_##NAME(                   \
      const T* x, unsigned long long n, unsigned t, const unsigned long long* above_before,        \
      const unsigned long long* ties_before, unsigned long long ties_allowed, int* idx, T* val) {  \
    cb::compress::write_body<T>(x, n, t, above_before, ties_before, ties_allowed, idx, val);        \
  }

extern "C" __global__ void __launch_bounds__(1024) compress_dequantize_add_int8(
    const unsigned char* codes, const float* scales, float* acc, unsigned long long n, unsigned block) {
  cb::compress::dequantize_add_body<cb::compress::Int8>(codes, scales, acc, n, block);
}
extern "C" __global__ void __launch_bounds__(1024) compress_dequantize_add_fp8(
    const unsigned char* codes, const float* scales, float* acc, unsigned long long n, unsigned block) {
  cb::compress::dequantize_add_body<cb::compress::Fp8>(codes, scales, acc, n, block);
}

#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_FLOAT16)
CB_COMPRESS_DTYPE(cb::half_t, float16)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_BFLOAT16)
CB_COMPRESS_DTYPE(cb::bf16_t, bfloat16)
#endif
#if COLLBENCH_WANT_DTYPE(COLLBENCH_DT_FLOAT32)
CB_COMPRESS_DTYPE(float, float32)
#endif
