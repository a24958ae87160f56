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
//
// The nccl backend's compressed runners (collbench/compress/gpu_runners.py, through
// collbench/compress/device.py) also use these, <dtype> as above unless said:
//   compress_zero(float* acc, u8* support, u64 n)                acc[i] = +0, support[i] = 0 (support
//       may be null). Grid-stride, like every kernel below.
//   compress_load_<dtype>(const T* x, float* acc, u64 n)          acc[i] = float(x[i]) (exact)
//   compress_store_<dtype>(const float* acc, T* out, u64 n)       out[i] = acc[i] rounded once to T
//   compress_add_dense_<dtype>(const T* x, float* acc, u64 n)     acc[i] = acc[i] + float(x[i])
//   compress_scatter_<dtype>(const i32* idx, const T* val, u64 m, float* acc, u8* support)
//       one sparse vector (indices without repeats) into a dense float32 one. support null:
//       acc[idx[j]] += val[j] (numpy's dense[idx] += val); else a merge: acc[idx[j]] = val[j] where
//       support was 0 (the value itself, -0 kept, as numpy's merge of two sparse vectors gives),
//       acc + val where it was 1, and support set.
//   compress_topk_hist_masked(const float* acc, const u8* support, u64 n, u32 prefix, u32 known,
//                             u32 shift, u32* hist)
//   compress_topk_count_masked(const float* acc, const u8* support, u64 n, u32 t, u32* above, u32* ties)
//   compress_topk_write_masked_<dtype>(const float* acc, const u8* support, u64 n, u32 t,
//       const u64* above_before, const u64* ties_before, u64 ties_allowed, i32* idx, T* val)
//       the top-k kernels over a dense float32 vector, val[pos] = acc[i] rounded to T. The key of
//       element i is the magnitude key of acc[i] with bit 31 set where support[i] is 1, and 0 where
//       it is 0: every supported element (a zero sum included) ranks above every unsupported one.
//       With support null the key is the plain magnitude key. t = 0, ties_allowed = 0 compacts the
//       supported (or the nonzero) elements in index order; the count kernel alone counts them.
//   compress_lowrank_project(const float* M, const float* Q, float* P, u32 m, u32 n, u32 r)
//       P = M Q (M m×n, Q n×r, P m×r, row-major float32): one CUDA block per row (grid-stride),
//       a block-wide sum per entry.
//   compress_lowrank_orthonormalize(float* P, u32 m, u32 r)
//       P's columns made orthonormal in place by modified Gram-Schmidt; ONE CUDA block. A column
//       whose remainder has norm exactly 0 stays zero (LAPACK would pick some direction).
//   compress_lowrank_back(const float* M, const float* P, float* Q, u32 m, u32 n, u32 r)
//       Q = Mᵀ P (n×r): one thread per entry, grid-stride.
//   compress_lowrank_expand_<dtype>(const float* P, const float* Q, T* out, u32 m, u32 n, u32 r,
//                                   u64 count)
//       out[t] = (P Qᵀ)[t / n, t % n] rounded once to T, for t < count (the unpadded elements).
//   PowerSGD's arithmetic is float32 with another summation order than the host's BLAS and a
//   different orthogonalization (Gram-Schmidt, not Householder): its results agree with the mpi
//   path within the powersgd tolerance, not bit for bit.
//
// NaN inputs are outside the contract with numpy (a NaN scale or key); an fp8 code of NaN is 0x7f.
// Status: compiled for sm_80/sm_90 by tests/gpu/test_compile.py and executed on the CPU by the
// numpy transliteration in tests/gpu/fakecuda/cupy/_compress_kernels.py (tests/compress); not yet
// run on a GPU (docs/compression.md, "The nccl path").
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
    if (mag > 0x7f800000u) {                      // NaN (the clamp lets it through)
      code = 0x7fu;
    } else if (mag < 0x3c800000u) {                    // below 2^-6: a subnormal step of 2^-9 (8 = 2^-6)
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

// Where the keys come from: the input itself (Plain) or a dense float32 vector with an optional
// support mask (Masked). value<V>(i) is what the write kernel stores for element i.
template <typename T> struct Plain {
  const T* x;
  __device__ __forceinline__ u32 key(u64 i) const { return key_of(x, i); }
  __device__ __forceinline__ T value(u64 i) const { return x[i]; }
};
template <typename V> struct Masked {
  const float* acc;
  const u8* support;
  __device__ __forceinline__ u32 key(u64 i) const {
    const u32 k = f32_as_u32(f32_abs(acc[i]));
    if (support == nullptr) return k;
    return support[i] ? (k | 0x80000000u) : 0u;
  }
  __device__ __forceinline__ V value(u64 i) const { return Elem<V>::store(acc[i]); }
};

template <typename S>
__device__ __forceinline__ void hist_body(S src, u64 n, u32 prefix, u32 known, u32 shift, u32* hist) {
  __shared__ u32 local[256];
  for (u32 d = threadIdx.x; d < 256u; d += blockDim.x) local[d] = 0u;
  __syncthreads();
  const u64 step = static_cast<u64>(gridDim.x) * blockDim.x;
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const u32 k = src.key(i);
    if ((k & known) == prefix) atomic_add_u32(&local[(k >> shift) & 255u], 1u);
  }
  __syncthreads();
  for (u32 d = threadIdx.x; d < 256u; d += blockDim.x)
    if (local[d]) atomic_add_u32(&hist[d], local[d]);
}

// The contiguous chunk of CUDA block b (count and write kernels must agree).
__device__ __forceinline__ void chunk_of(u64 n, u64* start, u64* stop) {
  const u64 per = (n + gridDim.x - 1) / gridDim.x;
  const u64 first = static_cast<u64>(blockIdx.x) * per;
  *start = first < n ? first : n;
  *stop = *start + per < n ? *start + per : n;
}

template <typename S>
__device__ __forceinline__ void count_body(S src, u64 n, u32 t, u32* above, u32* ties) {
  __shared__ u32 sums[2];
  if (threadIdx.x == 0) { sums[0] = 0u; sums[1] = 0u; }
  __syncthreads();
  u64 start, stop;
  chunk_of(n, &start, &stop);
  u32 a = 0u, e = 0u;
  for (u64 i = start + threadIdx.x; i < stop; i += blockDim.x) {
    const u32 k = src.key(i);
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

template <typename S, typename V>
__device__ __forceinline__ void write_body(S src, u64 n, u32 t, const u64* above_before,
                                           const u64* ties_before, u64 ties_allowed, i32* idx, V* val) {
  __shared__ u32 scan_a[1024];
  __shared__ u32 scan_e[1024];
  u64 start, stop;
  chunk_of(n, &start, &stop);
  u64 a_run = above_before[blockIdx.x], e_run = ties_before[blockIdx.x];
  for (u64 tile = start; tile < stop; tile += blockDim.x) {   // tiles in index order
    const u64 i = tile + threadIdx.x;
    const u32 k = i < stop ? src.key(i) : 0u;
    const u32 is_a = (i < stop && k > t) ? 1u : 0u;
    const u32 is_e = (i < stop && k == t) ? 1u : 0u;
    u32 total_a, total_e;
    const u64 a_before = a_run + block_exclusive_scan(is_a, scan_a, &total_a);
    const u64 e_before = e_run + block_exclusive_scan(is_e, scan_e, &total_e);
    if (is_a || (is_e && e_before < ties_allowed)) {
      const u64 pos = a_before + (e_before < ties_allowed ? e_before : ties_allowed);
      idx[pos] = static_cast<i32>(i);
      val[pos] = src.value(i);
    }
    a_run += total_a;
    e_run += total_e;
  }
}

// -- dense float32 accumulators (the runners' merges and sums) ---------------------------------

#define CB_GRID_STRIDE(i, n) \
  for (u64 i = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += static_cast<u64>(gridDim.x) * blockDim.x)

__device__ __forceinline__ void zero_body(float* acc, u8* support, u64 n) {
  CB_GRID_STRIDE(i, n) {
    acc[i] = 0.0f;
    if (support != nullptr) support[i] = 0u;
  }
}

template <typename T>
__device__ __forceinline__ void load_body(const T* x, float* acc, u64 n) {
  CB_GRID_STRIDE(i, n) acc[i] = load_f32(x, i);
}

template <typename T>
__device__ __forceinline__ void store_body(const float* acc, T* out, u64 n) {
  CB_GRID_STRIDE(i, n) out[i] = Elem<T>::store(acc[i]);
}

template <typename T>
__device__ __forceinline__ void add_dense_body(const T* x, float* acc, u64 n) {
  CB_GRID_STRIDE(i, n) acc[i] = f32_add(acc[i], load_f32(x, i));
}

template <typename T>
__device__ __forceinline__ void scatter_body(const i32* idx, const T* val, u64 m, float* acc, u8* support) {
  CB_GRID_STRIDE(j, m) {
    const u64 i = static_cast<u64>(static_cast<u32>(idx[j]));
    const float v = load_f32(val, j);
    if (support == nullptr) {
      acc[i] = f32_add(acc[i], v);
    } else {
      acc[i] = support[i] ? f32_add(acc[i], v) : v;
      support[i] = 1u;
    }
  }
}

// -- low rank (powersgd) ------------------------------------------------------------------------

__device__ __forceinline__ float f32_sqrt(float a) { float r; asm("sqrt.rn.f32 %0, %1;" : "=f"(r) : "f"(a)); return r; }
__device__ __forceinline__ float f32_neg(float a) { return u32_as_f32(f32_as_u32(a) ^ 0x80000000u); }

// The sum of one value per thread, returned to every thread (blockDim a power of two <= 1024).
__device__ __forceinline__ float block_sum(float v, float* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (u32 half = blockDim.x / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) buf[threadIdx.x] = f32_add(buf[threadIdx.x], buf[threadIdx.x + half]);
    __syncthreads();
  }
  const float total = buf[0];
  __syncthreads();
  return total;
}

__device__ __forceinline__ void project_body(const float* M, const float* Q, float* P, u32 m, u32 n, u32 r) {
  __shared__ float buf[1024];
  for (u32 i = blockIdx.x; i < m; i += gridDim.x) {
    for (u32 j = 0; j < r; ++j) {
      float s = 0.0f;
      for (u32 k = threadIdx.x; k < n; k += blockDim.x)
        s = f32_add(s, f32_mul(M[static_cast<u64>(i) * n + k], Q[static_cast<u64>(k) * r + j]));
      const float total = block_sum(s, buf);
      if (threadIdx.x == 0) P[static_cast<u64>(i) * r + j] = total;
    }
  }
}

__device__ __forceinline__ void orthonormalize_body(float* P, u32 m, u32 r) {
  __shared__ float buf[1024];
  for (u32 j = 0; j < r; ++j) {
    for (u32 l = 0; l < j; ++l) {
      float s = 0.0f;
      for (u32 i = threadIdx.x; i < m; i += blockDim.x)
        s = f32_add(s, f32_mul(P[static_cast<u64>(i) * r + l], P[static_cast<u64>(i) * r + j]));
      const float dot = block_sum(s, buf);
      for (u32 i = threadIdx.x; i < m; i += blockDim.x) {
        const u64 at = static_cast<u64>(i) * r;
        P[at + j] = f32_add(P[at + j], f32_neg(f32_mul(dot, P[at + l])));
      }
      __syncthreads();
    }
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < m; i += blockDim.x) {
      const float v = P[static_cast<u64>(i) * r + j];
      s = f32_add(s, f32_mul(v, v));
    }
    const float norm = f32_sqrt(block_sum(s, buf));
    for (u32 i = threadIdx.x; i < m; i += blockDim.x) {
      const u64 at = static_cast<u64>(i) * r + j;
      P[at] = norm > 0.0f ? f32_div(P[at], norm) : 0.0f;
    }
    __syncthreads();
  }
}

__device__ __forceinline__ void back_body(const float* M, const float* P, float* Q, u32 m, u32 n, u32 r) {
  const u64 total = static_cast<u64>(n) * r;
  CB_GRID_STRIDE(t, total) {
    const u32 k = static_cast<u32>(t % n), j = static_cast<u32>(t / n);   // adjacent threads: adjacent k
    float s = 0.0f;
    for (u32 i = 0; i < m; ++i)
      s = f32_add(s, f32_mul(M[static_cast<u64>(i) * n + k], P[static_cast<u64>(i) * r + j]));
    Q[static_cast<u64>(k) * r + j] = s;
  }
}

template <typename T>
__device__ __forceinline__ void expand_body(const float* P, const float* Q, T* out, u32 n, u32 r, u64 count) {
  CB_GRID_STRIDE(t, count) {
    const u64 i = t / n, k = t % n;
    float s = 0.0f;
    for (u32 j = 0; j < r; ++j) s = f32_add(s, f32_mul(P[i * r + j], Q[k * r + j]));
    out[t] = Elem<T>::store(s);
  }
}

#undef CB_GRID_STRIDE

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
    cb::compress::hist_body(cb::compress::Plain<T>{x}, n, prefix, known, shift, hist);             \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_count_##NAME(                   \
      const T* x, unsigned long long n, unsigned t, unsigned* above, unsigned* ties) {             \
    cb::compress::count_body(cb::compress::Plain<T>{x}, n, t, above, ties);                        \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_write_##NAME(                   \
      const T* x, unsigned long long n, unsigned t, const unsigned long long* above_before,        \
      const unsigned long long* ties_before, unsigned long long ties_allowed, int* idx, T* val) {  \
    cb::compress::write_body(cb::compress::Plain<T>{x}, n, t, above_before, ties_before, ties_allowed, idx, val); \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_topk_write_masked_##NAME(            \
      const float* acc, const unsigned char* support, unsigned long long n, unsigned t,            \
      const unsigned long long* above_before, const unsigned long long* ties_before,               \
      unsigned long long ties_allowed, int* idx, T* val) {                                         \
    cb::compress::write_body(cb::compress::Masked<T>{acc, support}, n, t, above_before, ties_before, \
                             ties_allowed, idx, val);                                              \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_load_##NAME(                         \
      const T* x, float* acc, unsigned long long n) {                                              \
    cb::compress::load_body<T>(x, acc, n);                                                          \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_store_##NAME(                        \
      const float* acc, T* out, unsigned long long n) {                                            \
    cb::compress::store_body<T>(acc, out, n);                                                       \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_add_dense_##NAME(                    \
      const T* x, float* acc, unsigned long long n) {                                              \
    cb::compress::add_dense_body<T>(x, acc, n);                                                     \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_scatter_##NAME(                      \
      const int* idx, const T* val, unsigned long long m, float* acc, unsigned char* support) {    \
    cb::compress::scatter_body<T>(idx, val, m, acc, support);                                       \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(1024) compress_lowrank_expand_##NAME(               \
      const float* P, const float* Q, T* out, unsigned m, unsigned n, unsigned r,                  \
      unsigned long long count) {                                                                  \
    (void)m;                                                                                       \
    cb::compress::expand_body<T>(P, Q, out, n, r, count);                                           \
  }

extern "C" __global__ void __launch_bounds__(1024) compress_dequantize_add_int8(
    const unsigned char* codes, const float* scales, float* acc, unsigned long long n, unsigned block) {
  cb::compress::dequantize_add_body<cb::compress::Int8>(codes, scales, acc, n, block);
}
extern "C" __global__ void __launch_bounds__(1024) compress_dequantize_add_fp8(
    const unsigned char* codes, const float* scales, float* acc, unsigned long long n, unsigned block) {
  cb::compress::dequantize_add_body<cb::compress::Fp8>(codes, scales, acc, n, block);
}

extern "C" __global__ void __launch_bounds__(1024) compress_zero(float* acc, unsigned char* support,
                                                                 unsigned long long n) {
  cb::compress::zero_body(acc, support, n);
}
extern "C" __global__ void __launch_bounds__(1024) compress_lowrank_project(
    const float* M, const float* Q, float* P, unsigned m, unsigned n, unsigned r) {
  cb::compress::project_body(M, Q, P, m, n, r);
}
extern "C" __global__ void __launch_bounds__(1024) compress_lowrank_orthonormalize(float* P, unsigned m, unsigned r) {
  cb::compress::orthonormalize_body(P, m, r);
}
extern "C" __global__ void __launch_bounds__(1024) compress_lowrank_back(
    const float* M, const float* P, float* Q, unsigned m, unsigned n, unsigned r) {
  cb::compress::back_body(M, P, Q, m, n, r);
}
extern "C" __global__ void __launch_bounds__(1024) compress_topk_hist_masked(
    const float* acc, const unsigned char* support, unsigned long long n, unsigned prefix, unsigned known,
    unsigned shift, unsigned* hist) {
  cb::compress::hist_body(cb::compress::Masked<float>{acc, support}, n, prefix, known, shift, hist);
}
extern "C" __global__ void __launch_bounds__(1024) compress_topk_count_masked(
    const float* acc, const unsigned char* support, unsigned long long n, unsigned t, unsigned* above,
    unsigned* ties) {
  cb::compress::count_body(cb::compress::Masked<float>{acc, support}, n, t, above, ties);
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
