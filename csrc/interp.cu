// interp.cu — the schedule interpreter: any lowered schedule, compiled into a device program by
// collbench/gpu/interp_program.py, run by one kernel launch per operation over CUDA IPC peer pointers.
//
// Entry points (extern "C"; <op> in sum prod max min; avg runs as sum plus the program's DIVIDE):
//   interp_<op>_<dtype>(const CommDesc* d, const unsigned char* program, u64 timeout_ns)
// `d` is the IpcCommunicator's descriptor (every rank's in/out/scratch/signal buffers as mapped in
// this process); `program` is this rank's program in device memory (a header, then instructions).
// Any grid size works (every rank may even choose its own), COLLBENCH_IPC_THREADS threads per block,
// and every block of the launch must be resident at once (the grid barrier below spins).
//
// Execution. Every block walks the whole instruction list:
//   COPY / REDUCE / DIVIDE  one data instruction, spread over the grid with the partition of
//                           collbench_common.cuh (16-byte packs grid-stride, head and tail in block 0;
//                           elementwise fallback when the operands are not mutually 16-byte aligned).
//                           An operand on a peer is read through its IPC pointer with L2-only loads
//                           (.cg): the reduction is fused into the remote read (read, combine, store).
//   SYNC                    grid barrier of this rank (optionally fence.acq_rel.sys first): separates
//                           data instructions whose ranges conflict, and precedes every signal.
//   SIGNAL_READY / _DONE    block 0, thread 0: st.release.sys of (running base + k) into the peer's
//                           flag word for this rank. Ready: "my buffers hold what you may read";
//                           done: "I have finished reading yours".
//   WAIT_READY / _DONE      every block, thread 0: ld.acquire.sys spin until this rank's flag word for
//                           the peer reaches (running base + k) (modulo 2^32), then __syncthreads.
// Flags are per ordered pair of ranks, not global: a ring step waits for its neighbour only.
//
// CUDA graphs. The running bases of every pair (how many readies/dones were sent and expected so
// far) and the grid barrier's arrival base live in this rank's signal buffer and are advanced by
// block 0 at the end of every launch (after a last grid barrier, so every block has read them): a
// captured launch replays correctly with constant arguments, as the IPC kernels' epochs do.
//
// Errors. Every spin is bounded by timeout_ns of %globaltimer; on expiry the block records the
// error (first error wins) in the IPC error record of its own signal buffer — word 1 holds
// COLLBENCH_INTERP_KID, word 4 the instruction index, word 3 the peer, word 10 what was awaited —
// and the kernel returns; a later launch on the communicator sees the error word and returns at once.
// A program that does not match the launch (header, rank, a range outside the buffers) is recorded
// as COLLBENCH_ERR_BAD_LAUNCH. The host decodes the record (collbench/gpu/interp.py).
#include "collbench_common.cuh"

// ---------------------------------------------------------------------------------------------
// Constants shared with collbench/gpu/interp_program.py (plain integer literals: Python parses
// every `#define COLLBENCH_INTERP_<NAME> <int>` of this file).
// ---------------------------------------------------------------------------------------------
#define COLLBENCH_INTERP_MAGIC 0x43424950      // "CBIP": first word of a program header
#define COLLBENCH_INTERP_VERSION 1
#define COLLBENCH_INTERP_HEADER_BYTES 256       // header, then the instructions
#define COLLBENCH_INTERP_INSTR_BYTES 64         // one instruction (struct Instr)
// Memories of a rank (the IpcCommunicator's buffers): instruction operand `mem` fields.
#define COLLBENCH_INTERP_MEM_IN 0
#define COLLBENCH_INTERP_MEM_OUT 1
#define COLLBENCH_INTERP_MEM_SCRATCH 2
// Opcodes.
#define COLLBENCH_INTERP_OP_COPY 1          // dst <- a                      (a may be a peer's)
#define COLLBENCH_INTERP_OP_REDUCE 2        // dst <- a (op) b               (a or b may be a peer's)
#define COLLBENCH_INTERP_OP_DIVIDE 3        // dst <- dst / nranks           (the end of avg)
#define COLLBENCH_INTERP_OP_SYNC 4          // grid barrier of this rank (arg 1: fence.acq_rel.sys first)
#define COLLBENCH_INTERP_OP_SIGNAL_READY 5  // tell `peer`: my buffers hold the state it may read (k-th)
#define COLLBENCH_INTERP_OP_WAIT_READY 6    // wait for `peer`'s k-th ready
#define COLLBENCH_INTERP_OP_SIGNAL_DONE 7   // tell `peer`: I have finished reading its buffers (k-th)
#define COLLBENCH_INTERP_OP_WAIT_DONE 8     // wait for `peer`'s k-th done
// Signal buffer words (after the IPC kernels' flags, counters and error record; see
// collbench_common.cuh). Flags are written by peers, the rest is private to the owner.
#define COLLBENCH_INTERP_SIG_WORD 2560          // start of the interpreter's area
#define COLLBENCH_INTERP_READY_FLAGS 0          // + src rank: latest ready value from src
#define COLLBENCH_INTERP_DONE_FLAGS 32          // + src rank: latest done value from src
#define COLLBENCH_INTERP_BASES 64               // 4 x MAX_RANKS running totals (see Bases)
#define COLLBENCH_INTERP_GRID_COUNT 128         // grid barrier arrivals (atomic)
#define COLLBENCH_INTERP_GRID_BASE 160          // arrivals before this launch
#define COLLBENCH_INTERP_SIG_WORDS 192
// Error record: kernel id (word 1) and what a timed-out wait waited for (word 10).
#define COLLBENCH_INTERP_KID 5
#define COLLBENCH_INTERP_WAIT_GRID 3

static_assert((COLLBENCH_INTERP_SIG_WORD + COLLBENCH_INTERP_SIG_WORDS) * 4 <= COLLBENCH_SIG_BYTES, "signal buffer too small");
static_assert(COLLBENCH_INTERP_SIG_WORD >= COLLBENCH_SIG_ERROR_WORD + COLLBENCH_ERR_WORDS, "overlaps the error record");
static_assert(COLLBENCH_INTERP_DONE_FLAGS >= COLLBENCH_INTERP_READY_FLAGS + COLLBENCH_MAX_RANKS, "flags overlap");
static_assert(COLLBENCH_INTERP_BASES >= COLLBENCH_INTERP_DONE_FLAGS + COLLBENCH_MAX_RANKS, "bases overlap");
static_assert(COLLBENCH_INTERP_GRID_COUNT >= COLLBENCH_INTERP_BASES + 4 * COLLBENCH_MAX_RANKS, "grid words overlap");

namespace cb {
namespace interp {

constexpr int kUnroll = 2;  // packs in flight per thread (512-thread blocks: 128 registers each)

// CommDesc, the IpcCommunicator's descriptor, is in collbench_common.cuh.

struct Header {
  u32 magic, version;
  i32 rank, nranks;
  u32 ninstr, itemsize;
  u64 capacity;  // bytes of each of in, out and scratch
  u32 reserved[8];
  u32 totals[4][COLLBENCH_MAX_RANKS];  // ready sent, ready awaited, done sent, done awaited, per peer
};
static_assert(sizeof(Header) <= COLLBENCH_INTERP_HEADER_BYTES, "program header too large");

struct Instr {
  u32 op, arg;
  i32 peer;
  u32 dmem;
  i32 arank;
  u32 amem;
  i32 brank;
  u32 bmem;
  u64 doff, aoff, boff, len;  // elements
};
static_assert(sizeof(Instr) == COLLBENCH_INTERP_INSTR_BYTES, "instruction layout changed: update interp_program.py");

enum { kReadyOut = 0, kReadyIn = 1, kDoneOut = 2, kDoneIn = 3 };


// The IPC error record (words after COLLBENCH_SIG_ERROR_WORD; see ipc_collectives.cu), plus word
// 10: what a timed-out wait waited for (an opcode, or COLLBENCH_INTERP_WAIT_GRID).
__device__ __noinline__ void record_error(u32* own_sig, u32 code, u32 peer, u32 instr, u32 expected, u32 seen,
                                          u32 rank, u64 waited_ns, u32 what) {
  u32* err = own_sig + COLLBENCH_SIG_ERROR_WORD;
  if (atom_cas(err, 0u, code) != 0u) return;  // first error wins
  const u64 us = waited_ns / 1000;
  st_volatile(err + 1, COLLBENCH_INTERP_KID);
  st_volatile(err + 2, blockIdx.x);
  st_volatile(err + 3, peer);
  st_volatile(err + 4, instr);
  st_volatile(err + 5, expected);
  st_volatile(err + 6, seen);
  st_volatile(err + 7, rank);
  st_volatile(err + 8, us > 0xffffffffull ? 0xffffffffu : static_cast<u32>(us));
  st_volatile(err + 9, gridDim.x);
  st_volatile(err + 10, what);
  fence_acq_rel_sys();
}

struct Shared {
  int abort;
  u32 grid_base;
  u32 bases[4][COLLBENCH_MAX_RANKS];
};

struct State {
  const CommDesc* d;
  u32* own;   // this rank's signal buffer
  u32* area;  // its interpreter words
  Shared* sh;
  u64 timeout_ns;
  u64 capacity;
  u32 nsync;
  int rank, nranks;
};

// Spin (thread 0 of the block) until *flag - target >= 0 modulo 2^32, bounded by the timeout.
// Returns false when the kernel must stop (timeout here, or an error recorded anywhere).
template <bool GPU_SCOPE>
__device__ __forceinline__ bool spin_until(State& s, const u32* flag, u32 target, u32 peer, u32 instr, u32 what) {
  const u64 t0 = global_timer_ns();
  for (u32 spins = 0;; ++spins) {
    const u32 v = GPU_SCOPE ? ld_acquire_gpu(flag) : ld_acquire_sys(flag);
    if (static_cast<int>(v - target) >= 0) return true;
    if ((spins & 63u) == 63u) {
      if (ld_volatile(s.own + COLLBENCH_SIG_ERROR_WORD) != 0) return false;  // another block gave up
      const u64 waited = global_timer_ns() - t0;
      if (waited > s.timeout_ns) {
        record_error(s.own, COLLBENCH_ERR_TIMEOUT, peer, instr, target, v, s.rank, waited, what);
        return false;
      }
      if (spins > 4096) nanosleep_ns(500);  // a peer that is not running yet needs no hammering
    }
  }
}

// Grid barrier of this rank: every block arrives (release, GPU scope) and waits until the grid has.
__device__ __forceinline__ bool grid_sync(State& s, bool fence, u32 instr) {
  if (fence) fence_acq_rel_sys();
  __syncthreads();
  if (gridDim.x > 1) {
    s.nsync += 1;
    if (threadIdx.x == 0) {
      u32* count = s.area + COLLBENCH_INTERP_GRID_COUNT;
      red_add_release_gpu(count, 1u);
      const u32 target = s.sh->grid_base + s.nsync * gridDim.x;
      if (!spin_until<true>(s, count, target, static_cast<u32>(s.rank), instr, COLLBENCH_INTERP_WAIT_GRID))
        s.sh->abort = 1;
    }
    __syncthreads();
  }
  return s.sh->abort == 0;
}

__device__ __forceinline__ bool wait_flag(State& s, const Instr& ins, u32 instr) {
  const bool ready = ins.op == COLLBENCH_INTERP_OP_WAIT_READY;
  if (threadIdx.x == 0) {
    const u32* flag = s.area + (ready ? COLLBENCH_INTERP_READY_FLAGS : COLLBENCH_INTERP_DONE_FLAGS) + ins.peer;
    const u32 target = s.sh->bases[ready ? kReadyIn : kDoneIn][ins.peer] + ins.arg;
    if (!spin_until<false>(s, flag, target, static_cast<u32>(ins.peer), instr, ins.op)) s.sh->abort = 1;
  }
  __syncthreads();
  return s.sh->abort == 0;
}

__device__ __forceinline__ void signal_flag(const State& s, const Instr& ins) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const bool ready = ins.op == COLLBENCH_INTERP_OP_SIGNAL_READY;
  u32* peer_area = reinterpret_cast<u32*>(s.d->sig[ins.peer]) + COLLBENCH_INTERP_SIG_WORD;
  u32* flag = peer_area + (ready ? COLLBENCH_INTERP_READY_FLAGS : COLLBENCH_INTERP_DONE_FLAGS) + s.rank;
  st_release_sys(flag, s.sh->bases[ready ? kReadyOut : kDoneOut][ins.peer] + ins.arg);
}

__device__ __forceinline__ u64 memory_base(const CommDesc* d, int rank, u32 mem) {
  return mem == COLLBENCH_INTERP_MEM_IN ? d->in[rank] : (mem == COLLBENCH_INTERP_MEM_OUT ? d->out[rank] : d->scratch[rank]);
}

// Whether a data instruction stays inside the buffers (every thread checks; the result is uniform).
template <typename T>
__device__ __forceinline__ bool in_bounds(const State& s, const Instr& ins) {
  const u64 cap = s.capacity / sizeof(T);
  if (ins.len > cap) return false;
  const u64 last = cap - ins.len;
  bool ok = ins.dmem <= 2 && ins.doff <= last;
  ok = ok && ins.arank >= 0 && ins.arank < s.nranks && ins.amem <= 2 && ins.aoff <= last;
  if (ins.op == COLLBENCH_INTERP_OP_REDUCE) ok = ok && ins.brank >= 0 && ins.brank < s.nranks && ins.bmem <= 2 && ins.boff <= last;
  return ok;
}

// One element of a data instruction: dst = a (op) b, or dst = a / divn.
template <typename T, int OP, bool DIVIDE>
__device__ __forceinline__ void element(T* dst, const T* a, const T* b, u64 i, int divn) {
  typedef Elem<T> E;
  if (DIVIDE) {
    dst[i] = E::store(finish<T>(E::load(ElemIO<T, true>::load(a + i)), divn));
  } else {
    dst[i] = E::store(combine<OP>(E::load(ElemIO<T, true>::load(a + i)), E::load(ElemIO<T, true>::load(b + i))));
  }
}

// dst[i] = a[i] (op) b[i] (or a[i] / divn) for i < n, every thread of the grid taking part, with the
// partition of reduce_range: when all operands share their address modulo 16, block 0 does the
// head up to the first 16-byte boundary and the tail, the whole packs go grid-stride (kUnroll in
// flight); otherwise elementwise grid-stride. dst may equal an operand exactly. All loads are .cg:
// operands are peers' memory or this rank's memory written by other blocks of this launch.
template <typename T, int OP, bool DIVIDE>
__device__ __forceinline__ void combine_range(T* dst, const T* a, const T* b, u64 n, int divn) {
  typedef Elem<T> E;
  typedef typename E::Acc Acc;
  constexpr int V = 16 / sizeof(T);
  if (n == 0) return;
  const u64 tid = static_cast<u64>(blockIdx.x) * blockDim.x + threadIdx.x;
  const u64 nthreads = static_cast<u64>(gridDim.x) * blockDim.x;
  const u64 mis = addr_of(dst) & 15;
  bool vec = (mis % sizeof(T)) == 0 && (addr_of(a) & 15) == mis;
  if (!DIVIDE) vec = vec && (addr_of(b) & 15) == mis;
  if (!vec) {
    for (u64 i = tid; i < n; i += nthreads) element<T, OP, DIVIDE>(dst, a, b, i, divn);
    return;
  }
  u64 head = mis ? (16 - mis) / sizeof(T) : 0;
  if (head > n) head = n;
  if (blockIdx.x == 0)
    for (u64 i = threadIdx.x; i < head; i += blockDim.x) element<T, OP, DIVIDE>(dst, a, b, i, divn);
  const u64 npacks = (n - head) / V;
  u64 p = tid;
  for (; p + (kUnroll - 1) * nthreads < npacks; p += kUnroll * nthreads) {
    PackOf<T> va[kUnroll], vb[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      va[u].p = ld_pack_cg(a + head + (p + u * nthreads) * V);
      if (!DIVIDE) vb[u].p = ld_pack_cg(b + head + (p + u * nthreads) * V);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const Acc x = E::load(va[u].e[e]);
        va[u].e[e] = DIVIDE ? E::store(finish<T>(x, divn)) : E::store(combine<OP>(x, E::load(vb[u].e[e])));
      }
      st_pack(dst + head + (p + u * nthreads) * V, va[u].p);
    }
  }
  for (; p < npacks; p += nthreads) {
    PackOf<T> va, vb;
    va.p = ld_pack_cg(a + head + p * V);
    if (!DIVIDE) vb.p = ld_pack_cg(b + head + p * V);
#pragma unroll
    for (int e = 0; e < V; ++e) {
      const Acc x = E::load(va.e[e]);
      va.e[e] = DIVIDE ? E::store(finish<T>(x, divn)) : E::store(combine<OP>(x, E::load(vb.e[e])));
    }
    st_pack(dst + head + p * V, va.p);
  }
  if (blockIdx.x == 0)
    for (u64 i = head + npacks * V + threadIdx.x; i < n; i += blockDim.x) element<T, OP, DIVIDE>(dst, a, b, i, divn);
}

template <typename T, int OP>
__device__ __forceinline__ void run(const CommDesc* d, const unsigned char* program, u64 timeout_ns) {
  __shared__ Shared sh;
  const Header* h = reinterpret_cast<const Header*>(program);
  const Instr* code = reinterpret_cast<const Instr*>(program + COLLBENCH_INTERP_HEADER_BYTES);
  State s;
  s.d = d;
  s.sh = &sh;
  s.timeout_ns = timeout_ns;
  s.nsync = 0;
  s.rank = d->rank;
  s.nranks = d->nranks;
  if (s.nranks < 1 || s.nranks > COLLBENCH_MAX_RANKS || s.rank < 0 || s.rank >= s.nranks) return;  // cannot even report
  s.own = reinterpret_cast<u32*>(d->sig[s.rank]);
  s.area = s.own + COLLBENCH_INTERP_SIG_WORD;
  s.capacity = h->capacity;
  const u32 ninstr = h->ninstr;
  if (threadIdx.x == 0) {
    const bool bad = h->magic != COLLBENCH_INTERP_MAGIC || h->version != COLLBENCH_INTERP_VERSION || h->rank != s.rank ||
                     h->nranks != s.nranks || h->itemsize != sizeof(T) || blockDim.x < 32 || gridDim.y != 1 ||
                     gridDim.z != 1 || blockDim.y != 1 || blockDim.z != 1;
    if (bad) record_error(s.own, COLLBENCH_ERR_BAD_LAUNCH, 0, 0, 0, 0, s.rank, 0, 0);
    sh.abort = (bad || ld_volatile(s.own + COLLBENCH_SIG_ERROR_WORD) != 0) ? 1 : 0;
    sh.grid_base = s.area[COLLBENCH_INTERP_GRID_BASE];
  }
  if (threadIdx.x < 4 * COLLBENCH_MAX_RANKS)
    sh.bases[threadIdx.x / COLLBENCH_MAX_RANKS][threadIdx.x % COLLBENCH_MAX_RANKS] =
        s.area[COLLBENCH_INTERP_BASES + threadIdx.x];
  __syncthreads();
  if (sh.abort) return;

  for (u32 i = 0; i < ninstr; ++i) {
    const Instr ins = code[i];
    switch (ins.op) {
      case COLLBENCH_INTERP_OP_COPY:
      case COLLBENCH_INTERP_OP_REDUCE:
      case COLLBENCH_INTERP_OP_DIVIDE: {
        if (!in_bounds<T>(s, ins)) {
          if (blockIdx.x == 0 && threadIdx.x == 0) record_error(s.own, COLLBENCH_ERR_BAD_LAUNCH, 0, i, 0, 0, s.rank, 0, ins.op);
          return;
        }
        T* dst = reinterpret_cast<T*>(memory_base(d, s.rank, ins.dmem)) + ins.doff;
        const T* a = reinterpret_cast<const T*>(memory_base(d, ins.arank, ins.amem)) + ins.aoff;
        if (ins.op == COLLBENCH_INTERP_OP_COPY) {
          copy_range<true, kUnroll>(dst, a, ins.len * sizeof(T));
        } else if (ins.op == COLLBENCH_INTERP_OP_REDUCE) {
          const T* b = reinterpret_cast<const T*>(memory_base(d, ins.brank, ins.bmem)) + ins.boff;
          combine_range<T, OP, false>(dst, a, b, ins.len, 0);
        } else {
          combine_range<T, OP, true>(dst, a, a, ins.len, s.nranks);
        }
        break;
      }
      case COLLBENCH_INTERP_OP_SYNC:
        if (!grid_sync(s, ins.arg != 0, i)) return;
        break;
      case COLLBENCH_INTERP_OP_SIGNAL_READY:
      case COLLBENCH_INTERP_OP_SIGNAL_DONE:
        if (ins.peer < 0 || ins.peer >= s.nranks) return;
        signal_flag(s, ins);
        break;
      case COLLBENCH_INTERP_OP_WAIT_READY:
      case COLLBENCH_INTERP_OP_WAIT_DONE:
        if (ins.peer < 0 || ins.peer >= s.nranks) return;
        if (!wait_flag(s, ins, i)) return;
        break;
      default:
        if (blockIdx.x == 0 && threadIdx.x == 0) record_error(s.own, COLLBENCH_ERR_BAD_LAUNCH, 0, i, 0, 0, s.rank, 0, ins.op);
        return;
    }
  }
  // Every block has read the bases (and finished): advance them for the next launch.
  if (!grid_sync(s, false, ninstr)) return;
  if (blockIdx.x == 0) {
    if (threadIdx.x < 4 * COLLBENCH_MAX_RANKS) {
      const u32 kind = threadIdx.x / COLLBENCH_MAX_RANKS, peer = threadIdx.x % COLLBENCH_MAX_RANKS;
      s.area[COLLBENCH_INTERP_BASES + threadIdx.x] = sh.bases[kind][peer] + (static_cast<int>(peer) < s.nranks ? h->totals[kind][peer] : 0u);
    }
    if (threadIdx.x == 0 && gridDim.x > 1) s.area[COLLBENCH_INTERP_GRID_BASE] = sh.grid_base + s.nsync * gridDim.x;
  }
}

}  // namespace interp
}  // namespace cb

#define CB_INTERP_OP(T, NAME, OPNAME, OPID)                                                                \
  extern "C" __global__ void __launch_bounds__(COLLBENCH_IPC_THREADS) interp_##OPNAME##_##NAME(             \
      const cb::CommDesc* d, const unsigned char* program, unsigned long long timeout_ns) {        \
    cb::interp::run<T, OPID>(d, program, timeout_ns);                                                      \
  }

#define CB_INTERP_DTYPE(T, NAME)                   \
  CB_INTERP_OP(T, NAME, sum, COLLBENCH_OP_SUM)     \
  CB_INTERP_OP(T, NAME, prod, COLLBENCH_OP_PROD)   \
  CB_INTERP_OP(T, NAME, max, COLLBENCH_OP_MAX)     \
  CB_INTERP_OP(T, NAME, min, COLLBENCH_OP_MIN)

CB_FOR_EACH_DTYPE(CB_INTERP_DTYPE)
