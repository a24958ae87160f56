// reduce.cu — local elementwise reductions used by the schedule executors and the checks.
//
// Entry points (extern "C", so Python finds them by name without C++ mangling):
//   reduce_<op>_<dtype>(T* dst, const T* a, const T* b, u64 n)           dst = a op b
//   reduce_many_<op>_<dtype>(T* dst, const T* const* in, int nin, u64 n)  dst = in[0] op ... op in[nin-1]
//   finalize_avg_<dtype>(T* dst, u64 n, int nranks)                       dst = dst / nranks
// with <op> in sum prod max min and <dtype> a collbench dtype name (int8 ... float64). avg has no
// reduce kernel of its own: it reduces with sum and finishes with finalize_avg once (integers
// truncate toward zero, floats round once; 16-bit types compute in float32).
//
// 16-bit floats accumulate in float32 and round once per store, so reduce_many rounds once at the
// end, not after every input. Pointers that share their address modulo 16 get 16-byte vector
// loads/stores (scalar head up to the first boundary, scalar tail); others take a scalar path.
// Kernels are grid-stride: any grid size is correct, the host picks one for bandwidth.
#include "collbench_common.cuh"

namespace cb {

template <typename T, int OP>
__device__ __forceinline__ void reduce2_body(T* dst, const T* a, const T* b, u64 n) {
  const T* src[2] = {a, b};
  reduce_range<T, OP, false>(dst, src, 2, n, 0);
}

template <typename T, int OP>
__device__ __forceinline__ void reduce_many_body(T* dst, const T* const* in, int nin, u64 n) {
  if (nin <= 0) return;  // the host rejects nin < 1; never read in[0] of an empty list
  reduce_range<T, OP, false>(dst, in, nin, n, 0);
}

template <typename T>
__device__ __forceinline__ void finalize_avg_body(T* dst, u64 n, int nranks) {
  if (nranks <= 0) return;  // the host rejects it; avoid a division by zero on integers
  const T* src[1] = {dst};
  // One "source" combined with nothing, divided once: exactly dst = dst / nranks.
  reduce_range<T, COLLBENCH_OP_SUM, false>(dst, src, 1, n, nranks);
}

}  // namespace cb

#define CB_REDUCE_OP(T, NAME, OPNAME, OPID)                                                       \
  extern "C" __global__ void __launch_bounds__(512)                                               \
      reduce_##OPNAME##_##NAME(T* dst, const T* a, const T* b, unsigned long long n) {            \
    cb::reduce2_body<T, OPID>(dst, a, b, n);                                                      \
  }                                                                                               \
  extern "C" __global__ void __launch_bounds__(512) reduce_many_##OPNAME##_##NAME(                \
      T* dst, const T* const* in, int nin, unsigned long long n) {                                \
    cb::reduce_many_body<T, OPID>(dst, in, nin, n);                                               \
  }

#define CB_REDUCE_DTYPE(T, NAME)                                                                  \
  CB_REDUCE_OP(T, NAME, sum, COLLBENCH_OP_SUM)                                                    \
  CB_REDUCE_OP(T, NAME, prod, COLLBENCH_OP_PROD)                                                  \
  CB_REDUCE_OP(T, NAME, max, COLLBENCH_OP_MAX)                                                    \
  CB_REDUCE_OP(T, NAME, min, COLLBENCH_OP_MIN)                                                    \
  extern "C" __global__ void __launch_bounds__(512)                                               \
      finalize_avg_##NAME(T* dst, unsigned long long n, int nranks) {                             \
    cb::finalize_avg_body<T>(dst, n, nranks);                                                     \
  }

CB_FOR_EACH_DTYPE(CB_REDUCE_DTYPE)
