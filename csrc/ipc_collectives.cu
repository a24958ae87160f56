// ipc_collectives.cu — intra-node collectives over CUDA IPC peer pointers with flag barriers.
//
// Entry points (extern "C"; <op> in sum prod max min avg, <dtype> a collbench dtype name):
//   ipc_one_shot_<op>_<dtype>      (const CommDesc* d, u64 count, u64 timeout_ns, int inplace)
//   ipc_two_shot_<op>_<dtype>      (same)
//   ipc_reduce_scatter_<op>_<dtype>(const CommDesc* d, u64 count_per_rank, u64 timeout_ns, int inplace)
//   ipc_allgather                  (const CommDesc* d, u64 bytes_per_rank, u64 timeout_ns, int inplace)
// Every launch uses COLLBENCH_IPC_THREADS threads per block and the same grid on every rank.
//
// Buffers (all cudaMalloc'ed by collbench/gpu/ipc.py, 256-byte aligned, IPC-shared):
//   in[r], out[r], scratch[r] of max_bytes each; sig[r] of COLLBENCH_SIG_BYTES. CommDesc holds the
//   addresses of every rank's buffers as mapped in THIS process (own ones unmapped).
// Buffer conventions (those of NCCL): allreduce in place: result in in[r]; allgather in place:
//   rank r's block already sits at out[r] + r*bytes; reduce_scatter in place: result at
//   in[r] + r*count.
//
// Flag barrier. sig[r] holds flags[block][src] (written by peers), a private epoch counter per
// block, and an error record. Block b of every kernel performs a fixed sequence of barriers; each
// one increments the block's epoch e (kept in the counter on the device between launches, so a
// CUDA graph that replays the same launch with the same arguments keeps counting) and:
//   (1) optionally fence.acq_rel.sys by every thread (data barrier: make this block's stores to
//       buffers that peers read visible at system scope);
//   (2) __syncthreads, then thread t < nranks stores e into flags[b][rank] of rank t's signal
//       buffer with st.release.sys (cumulative: it publishes what the block did before (2));
//   (3) thread t spins with ld.acquire.sys on flags[b][t] of its own buffer until it reaches e
//       (compared modulo 2^32), then __syncthreads hands the acquired view to the whole block.
// A peer can be at most one barrier ahead (it cannot pass barrier e+1 before we signal e+1), so
// "flag >= e" is exact. Block b only ever waits for block b of the peers, never for another block
// of its own kernel; the host caps the grid at the SM count so that when the ranks run on
// different GPUs every block of a launch is resident and a waiting block can never starve a peer
// block it waits for. The data each block exchanges across a data barrier is exactly the data the
// same block index produced on the peers (reduce_range and copy_range partition identically; see
// collbench_common.cuh), so per-block barriers suffice.
//
// Shared GPU: in the tests 2 or 4 processes share one GPU; their contexts are time-sliced, so a
// spinning kernel waits until the driver switches contexts (compute preemption) and the peer's
// kernel runs. That is slow but correct. Every spin is bounded by timeout_ns of %globaltimer
// (wall-clock ns, which keeps running while the context is switched out, unlike clock64); on
// expiry the block records an error (first error wins) in its own signal buffer and the kernel
// returns. Every later kernel on that communicator sees the error word and returns at once, so a
// captured graph of N launches costs one timeout, not N. The host reads the record (check_error).
#include "collbench_common.cuh"

namespace cb {

// Packs in flight per thread in the IPC kernels: 512 threads leave 128 registers per thread.
constexpr int kIpcUnroll = 2;



// Error record layout (words after COLLBENCH_SIG_ERROR_WORD); python/ipc.py decodes it.
//   0 code, 1 kernel id, 2 block, 3 peer rank waited for, 4 barrier index, 5 expected epoch,
//   6 flag value seen, 7 own rank, 8 waited microseconds (saturated), 9 grid size
__device__ __forceinline__ void record_error(u32* own_sig, u32 code, u32 kid, u32 peer, u32 bar, u32 expected, u32 seen,
                             u32 rank, u64 waited_ns) {
  u32* err = own_sig + COLLBENCH_SIG_ERROR_WORD;
  if (atom_cas(err, 0u, code) != 0u) return;  // first error wins
  u64 us = waited_ns / 1000;
  st_volatile(err + 1, kid);
  st_volatile(err + 2, blockIdx.x);
  st_volatile(err + 3, peer);
  st_volatile(err + 4, bar);
  st_volatile(err + 5, expected);
  st_volatile(err + 6, seen);
  st_volatile(err + 7, rank);
  st_volatile(err + 8, us > 0xffffffffull ? 0xffffffffu : static_cast<u32>(us));
  st_volatile(err + 9, gridDim.x);
  fence_acq_rel_sys();
}

struct BlockShared {
  int abort;
  u32 epoch;
  const void* src[COLLBENCH_MAX_RANKS];
};

// Per-block barrier state; every thread keeps the same copy in registers.
struct Sync {
  const CommDesc* d;
  u32* own;  // this rank's signal buffer
  BlockShared* sh;
  u64 timeout_ns;
  u32 epoch;
  int rank, nranks, kid, nbar;
};

// Kernel prologue: validate the launch, read the block's epoch counter. Returns false when the
// kernel must return at once (a recorded error, or a launch the host should never make).
__device__ __forceinline__ bool sync_begin(Sync& s, BlockShared* sh, const CommDesc* d, u64 timeout_ns, int kid) {
  s.d = d;
  s.sh = sh;
  s.timeout_ns = timeout_ns;
  s.kid = kid;
  s.nbar = 0;
  s.rank = d->rank;
  s.nranks = d->nranks;
  if (s.nranks < 1 || s.nranks > COLLBENCH_MAX_RANKS || s.rank < 0 || s.rank >= s.nranks) return false;  // cannot even report
  s.own = reinterpret_cast<u32*>(d->sig[s.rank]);
  if (threadIdx.x == 0) {
    const bool bad = gridDim.x > COLLBENCH_MAX_BLOCKS || blockDim.x < static_cast<unsigned>(s.nranks) ||
                     gridDim.y != 1 || gridDim.z != 1 || blockDim.y != 1 || blockDim.z != 1;
    if (bad) record_error(s.own, COLLBENCH_ERR_BAD_LAUNCH, kid, 0, 0, 0, 0, s.rank, 0);
    sh->abort = (bad || ld_volatile(s.own + COLLBENCH_SIG_ERROR_WORD) != 0) ? 1 : 0;
    sh->epoch = bad ? 0u : s.own[COLLBENCH_SIG_COUNTERS_WORD + blockIdx.x];
  }
  __syncthreads();
  s.epoch = sh->epoch;
  return sh->abort == 0;
}

// Kernel epilogue: persist the epoch for the next launch (stream order makes it visible to it).
__device__ __forceinline__ void sync_end(const Sync& s) {
  if (threadIdx.x == 0) s.own[COLLBENCH_SIG_COUNTERS_WORD + blockIdx.x] = s.epoch;
}

// One flag barrier among block blockIdx.x of every rank. Returns false on timeout or when an
// error was recorded meanwhile (the caller returns without touching the epoch counter).
__device__ __forceinline__ bool barrier(Sync& s, bool data_fence) {
  s.epoch += 1;
  s.nbar += 1;
  if (data_fence) fence_acq_rel_sys();
  __syncthreads();
  const int t = threadIdx.x;
  if (t < s.nranks) {
    u32* peer_sig = reinterpret_cast<u32*>(s.d->sig[t]);
    st_release_sys(peer_sig + COLLBENCH_SIG_FLAGS_WORD + blockIdx.x * COLLBENCH_MAX_RANKS + s.rank, s.epoch);
    const u32* mine = s.own + COLLBENCH_SIG_FLAGS_WORD + blockIdx.x * COLLBENCH_MAX_RANKS + t;
    const u64 t0 = global_timer_ns();
    for (u32 spins = 0;; ++spins) {
      const u32 v = ld_acquire_sys(mine);
      if (static_cast<int>(v - s.epoch) >= 0) break;
      if ((spins & 63u) == 63u) {
        if (ld_volatile(s.own + COLLBENCH_SIG_ERROR_WORD) != 0) {  // another block gave up
          s.sh->abort = 1;
          break;
        }
        const u64 waited = global_timer_ns() - t0;
        if (waited > s.timeout_ns) {
          record_error(s.own, COLLBENCH_ERR_TIMEOUT, s.kid, t, s.nbar, s.epoch, v, s.rank, waited);
          s.sh->abort = 1;
          break;
        }
        // Back off after the first few microseconds: a peer that is not running yet (another
        // context, another process still launching) needs no hammering of the memory system.
        if (spins > 4096) nanosleep_ns(500);
      }
    }
  }
  __syncthreads();
  return s.sh->abort == 0;
}

// Element range of chunk c when n elements are split into nranks chunks of whole 16-byte packs;
// the last chunk also takes the tail that does not fill a pack. Identical on every rank.
template <typename T>
__device__ __forceinline__ void chunk_range(u64 n, int nranks, int c, u64& begin, u64& end) {
  constexpr u64 V = 16 / sizeof(T);
  const u64 npk = n / V;
  const u64 cs = (npk + nranks - 1) / nranks;
  const u64 b = static_cast<u64>(c) * cs;
  const u64 e = b + cs;
  begin = (b < npk ? b : npk) * V;
  end = (c == nranks - 1) ? n : (e < npk ? e : npk) * V;
}

template <typename T, int OP>
__device__ __forceinline__ int avg_divisor(int nranks) { return OP == COLLBENCH_OP_AVG ? nranks : 0; }

// One-shot allreduce: every rank reads every input and reduces into its own result.
// Out of place: start barrier, reduce in[*] -> out[r], end barrier (peers done with in[r]).
// In place: start barrier, reduce in[*] -> scratch[r], barrier (peers done with in[r]), copy
// scratch[r] -> in[r]; no end barrier, the next launch's start barrier orders later reads.
template <typename T, int OP>
__device__ __forceinline__ void one_shot(const CommDesc* d, u64 n, u64 timeout_ns, int inplace) {
  __shared__ BlockShared sh;
  Sync s;
  if (!sync_begin(s, &sh, d, timeout_ns, COLLBENCH_KID_ONE_SHOT)) return;
  if (threadIdx.x < static_cast<unsigned>(s.nranks)) sh.src[threadIdx.x] = reinterpret_cast<const void*>(d->in[threadIdx.x]);
  if (!barrier(s, false)) return;
  const T* const* src = reinterpret_cast<const T* const*>(sh.src);
  T* dst = reinterpret_cast<T*>(inplace ? d->scratch[s.rank] : d->out[s.rank]);
  reduce_range<T, OP, true, kIpcUnroll>(dst, src, s.nranks, n, avg_divisor<T, OP>(s.nranks));
  if (!barrier(s, false)) return;
  if (inplace) copy_range<false, kIpcUnroll>(reinterpret_cast<void*>(d->in[s.rank]), dst, n * sizeof(T));
  sync_end(s);
}

// Two-shot allreduce: reduce-scatter by reads (rank r reduces chunk r of every input into
// scratch[r]), data barrier, allgather by reads (chunk c from scratch[c], c = r+1, r+2, ... so the
// ranks start on different peers), end barrier (peers done with scratch[r] and in[r]).
template <typename T, int OP>
__device__ __forceinline__ void two_shot(const CommDesc* d, u64 n, u64 timeout_ns, int inplace) {
  __shared__ BlockShared sh;
  Sync s;
  if (!sync_begin(s, &sh, d, timeout_ns, COLLBENCH_KID_TWO_SHOT)) return;
  u64 b, e;
  chunk_range<T>(n, s.nranks, s.rank, b, e);
  if (threadIdx.x < static_cast<unsigned>(s.nranks))
    sh.src[threadIdx.x] = reinterpret_cast<const T*>(d->in[threadIdx.x]) + b;
  if (!barrier(s, false)) return;
  const T* const* src = reinterpret_cast<const T* const*>(sh.src);
  reduce_range<T, OP, true, kIpcUnroll>(reinterpret_cast<T*>(d->scratch[s.rank]) + b, src, s.nranks, e - b,
                            avg_divisor<T, OP>(s.nranks));
  if (!barrier(s, true)) return;
  T* out = reinterpret_cast<T*>(inplace ? d->in[s.rank] : d->out[s.rank]);
  for (int j = 1; j <= s.nranks; ++j) {
    const int c = (s.rank + j) % s.nranks;
    u64 cb_, ce;
    chunk_range<T>(n, s.nranks, c, cb_, ce);
    copy_range<true, kIpcUnroll>(out + cb_, reinterpret_cast<const T*>(d->scratch[c]) + cb_, (ce - cb_) * sizeof(T));
  }
  if (!barrier(s, false)) return;
  sync_end(s);
}

// Reduce-scatter: rank r reduces block r (count elements at r*count) of every input.
template <typename T, int OP>
__device__ __forceinline__ void reduce_scatter(const CommDesc* d, u64 count, u64 timeout_ns, int inplace) {
  __shared__ BlockShared sh;
  Sync s;
  if (!sync_begin(s, &sh, d, timeout_ns, COLLBENCH_KID_REDUCE_SCATTER)) return;
  const u64 off = static_cast<u64>(s.rank) * count;
  if (threadIdx.x < static_cast<unsigned>(s.nranks))
    sh.src[threadIdx.x] = reinterpret_cast<const T*>(d->in[threadIdx.x]) + off;
  if (!barrier(s, false)) return;
  const T* const* src = reinterpret_cast<const T* const*>(sh.src);
  T* dst = inplace ? reinterpret_cast<T*>(d->in[s.rank]) + off : reinterpret_cast<T*>(d->out[s.rank]);
  reduce_range<T, OP, true, kIpcUnroll>(dst, src, s.nranks, count, avg_divisor<T, OP>(s.nranks));
  if (!barrier(s, false)) return;
  sync_end(s);
}

}  // namespace cb

// Allgather: untyped, counts in bytes. Rank r copies block c of rank c into out[r] + c*bytes.
extern "C" __global__ void __launch_bounds__(COLLBENCH_IPC_THREADS)
    ipc_allgather(const cb::CommDesc* d, unsigned long long bytes, unsigned long long timeout_ns, int inplace) {
  using namespace cb;
  __shared__ BlockShared sh;
  Sync s;
  if (!sync_begin(s, &sh, d, timeout_ns, COLLBENCH_KID_ALLGATHER)) return;
  if (!barrier(s, false)) return;
  u8* out = reinterpret_cast<u8*>(d->out[s.rank]);
  for (int j = 0; j < s.nranks; ++j) {
    const int c = (s.rank + j) % s.nranks;
    if (inplace && c == s.rank) continue;  // already in place
    const u8* src = inplace ? reinterpret_cast<const u8*>(d->out[c]) + static_cast<u64>(c) * bytes
                            : reinterpret_cast<const u8*>(d->in[c]);
    copy_range<true, kIpcUnroll>(out + static_cast<u64>(c) * bytes, src, bytes);
  }
  if (!barrier(s, false)) return;
  sync_end(s);
}

#define CB_IPC_OP(T, NAME, OPNAME, OPID)                                                              \
  extern "C" __global__ void __launch_bounds__(COLLBENCH_IPC_THREADS) ipc_one_shot_##OPNAME##_##NAME(  \
      const cb::CommDesc* d, unsigned long long n, unsigned long long timeout_ns, int inplace) {       \
    cb::one_shot<T, OPID>(d, n, timeout_ns, inplace);                                                 \
  }                                                                                                   \
  extern "C" __global__ void __launch_bounds__(COLLBENCH_IPC_THREADS) ipc_two_shot_##OPNAME##_##NAME(  \
      const cb::CommDesc* d, unsigned long long n, unsigned long long timeout_ns, int inplace) {       \
    cb::two_shot<T, OPID>(d, n, timeout_ns, inplace);                                                 \
  }                                                                                                   \
  extern "C" __global__ void __launch_bounds__(COLLBENCH_IPC_THREADS)                                 \
      ipc_reduce_scatter_##OPNAME##_##NAME(const cb::CommDesc* d, unsigned long long count,           \
                                           unsigned long long timeout_ns, int inplace) {              \
    cb::reduce_scatter<T, OPID>(d, count, timeout_ns, inplace);                                       \
  }

#define CB_IPC_DTYPE(T, NAME)                        \
  CB_IPC_OP(T, NAME, sum, COLLBENCH_OP_SUM)          \
  CB_IPC_OP(T, NAME, prod, COLLBENCH_OP_PROD)        \
  CB_IPC_OP(T, NAME, max, COLLBENCH_OP_MAX)          \
  CB_IPC_OP(T, NAME, min, COLLBENCH_OP_MIN)          \
  CB_IPC_OP(T, NAME, avg, COLLBENCH_OP_AVG)

CB_FOR_EACH_DTYPE(CB_IPC_DTYPE)
