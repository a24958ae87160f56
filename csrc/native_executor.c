/* collbench's native execution path (see native_executor.h and collbench/native.py).
 *
 *   cb_collective_loop  times ITERATIONS back-to-back calls of one native MPI collective;
 *   cb_plan_*           runs a whole compiled schedule: the lowered program, flattened once
 *                       into arrays, bound here to pointers and reduction functions, then
 *                       executed step by step with MPI_Irecv/MPI_Isend + MPI_Waitall and
 *                       vectorizable local reductions;
 *   cb_reduce/cb_finalize_avg  the local arithmetic alone (tested bit for bit against numpy).
 *
 * Nothing allocates inside a timed loop. Times come from CLOCK_MONOTONIC (what Python's
 * perf_counter reads on Linux). The caller (ctypes) releases the GIL, so collbench's watchdog
 * thread keeps running while a loop is stuck in MPI.
 *
 * Arithmetic matches collbench.algorithms.reduction (numpy + ml_dtypes) bit for bit:
 *   - integers wrap around (computed in the unsigned type of the same width: no undefined
 *     behaviour); avg divides once at the end, truncating toward zero, and gives 0 when the
 *     rank count exceeds the type's maximum (as finalize_avg does);
 *   - float16/bfloat16: each binary operation is computed in float32 and rounded once to the
 *     16-bit type (round to nearest even; numpy's and ml_dtypes' conversions, NaN included);
 *   - max/min follow numpy's choices exactly, NaN and signed zeros included: float32, float64
 *     and bfloat16 return `a` when `a` is NaN, else `a > b ? a : b` (min: `a < b ? a : b`);
 *     float16 returns `a` when `a >= b` (min: `a <= b`) or `a` is NaN, else `b` (numpy's half
 *     comparisons);
 *   - sum/prod of two NaNs is a NaN whose payload is whichever operand the hardware keeps
 *     (numpy's own loops differ by dtype); every other result, NaN payloads included, is exact.
 *
 * Build (collbench/native.py does it at first use, with its CFLAGS):
 *   mpicc -O3 -fPIC -shared -fno-fast-math -ffp-contract=off -fno-trapping-math \
 *         -o libcollbench_native.so native_executor.c
 */
#include "native_executor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cb_abi_version(void) { return CB_ABI_VERSION; }

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* 16-bit floating point conversions                                                          */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* Exact; NaN payloads are kept (no quieting), like numpy's npy_half_to_float. Written without
 * branches so that loops using it vectorize. */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13;          /* exponent+mantissa, float position */
    uint32_t exp = em & 0x0f800000u;
    uint32_t normal = em + ((127u - 15u) << 23);
    uint32_t special = em + ((255u - 31u) << 23);         /* inf and NaN keep their payload */
    /* subnormal h = m * 2^-24: 2^-14 * (1 + m/1024) - 2^-14 is exact in float */
    uint32_t subnormal = f2u(u2f(em + (113u << 23)) - u2f(113u << 23));
    uint32_t bits = exp == 0x0f800000u ? special : (exp == 0 ? subnormal : normal);
    return u2f(bits | sign);
}

/* Round to nearest even, overflow to infinity; NaN keeps its top payload bits and stays a NaN
 * (numpy's npy_float_to_half). */
static inline uint16_t float_to_half(float f) {
    uint32_t u = f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t payload = (a & 0x007fffffu) >> 13;
    uint32_t nan = 0x7c00u + payload + (payload == 0);
    /* below 2^-14 the result is subnormal: adding 0.5 makes the FPU round to a multiple of 2^-24 */
    const float half_ulp_magic = 0.5f;
    uint32_t subnormal = f2u(u2f(a) + half_ulp_magic) - f2u(half_ulp_magic);
    uint32_t normal = (a - (112u << 23) + 0xfffu + ((a >> 13) & 1u)) >> 13;
    uint32_t o = a > 0x7f800000u ? nan : (a >= 0x47800000u ? 0x7c00u : (a < (113u << 23) ? subnormal : normal));
    return (uint16_t)(o | sign);
}

static inline float bf16_to_float(uint16_t h) { return u2f((uint32_t)h << 16); }

/* Round to nearest even; NaN becomes the quiet NaN of its sign (ml_dtypes/Eigen). */
static inline uint16_t float_to_bf16(float f) {
    uint32_t u = f2u(f);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = ((u >> 16) & 0x8000u) | 0x7fc0u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* ------------------------------------------------------------------------------------------ */
/* Reductions: dst = a op b, elementwise                                                        */

typedef void (*reduce_fn)(void *dst, const void *a, const void *b, size_t n);

/* The library is built for the baseline ISA (it is cached and may be shared by nodes with
 * different CPUs), so the loops are cloned for AVX2 and AVX-512 and the loader picks the best
 * one the CPU has (GCC's function multi-versioning, glibc ifunc). Every clone computes the same
 * bits: integer arithmetic is exact, each float operation is one IEEE operation (no
 * contraction: -ffp-contract=off), and the comparisons keep their C semantics. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__) && \
    !defined(CB_NO_TARGET_CLONES)
#define CB_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CB_CLONES
#endif

/* Three loops per (type, op), so that the compiler knows what aliases what and vectorizes:
 * _3: dst, a and b distinct; _a: dst is a; _b: dst is b. Any other overlap is refused when a
 * plan is created (the Python executor handles it). */
#define CB_REDUCE(NAME, T, EXPR)                                                                \
    CB_CLONES static void NAME##_3(void *d_, const void *a_, const void *b_, size_t n) {                  \
        T *restrict d = (T *)d_;                                                                 \
        const T *restrict pa = (const T *)a_;                                                    \
        const T *restrict pb = (const T *)b_;                                                    \
        for (size_t i = 0; i < n; i++) { T x = pa[i], y = pb[i]; d[i] = (T)(EXPR); }            \
    }                                                                                            \
    CB_CLONES static void NAME##_a(void *d_, const void *a_, const void *b_, size_t n) {                  \
        (void)a_;                                                                                \
        T *restrict d = (T *)d_;                                                                 \
        const T *restrict pb = (const T *)b_;                                                    \
        for (size_t i = 0; i < n; i++) { T x = d[i], y = pb[i]; d[i] = (T)(EXPR); }             \
    }                                                                                            \
    CB_CLONES static void NAME##_b(void *d_, const void *a_, const void *b_, size_t n) {                  \
        (void)b_;                                                                                \
        T *restrict d = (T *)d_;                                                                 \
        const T *restrict pa = (const T *)a_;                                                    \
        for (size_t i = 0; i < n; i++) { T x = pa[i], y = d[i]; d[i] = (T)(EXPR); }             \
    }                                                                                            \
    CB_CLONES static void NAME##_aa(void *d_, const void *a_, const void *b_, size_t n) {                 \
        (void)a_; (void)b_;                                                                      \
        T *restrict d = (T *)d_;                                                                 \
        for (size_t i = 0; i < n; i++) { T x = d[i], y = d[i]; d[i] = (T)(EXPR); }              \
    }

/* integers: + and * in the unsigned type of the same width (wrap-around, no UB) */
#define CB_INT_OPS(P, T, U)                                                                      \
    CB_REDUCE(P##_sum, T, (U)x + (U)y)                                                           \
    CB_REDUCE(P##_prod, T, (U)((U)x * (U)y))                                                     \
    CB_REDUCE(P##_max, T, x > y ? x : y)                                                         \
    CB_REDUCE(P##_min, T, x < y ? x : y)

CB_INT_OPS(i8, int8_t, uint8_t)
CB_INT_OPS(u8, uint8_t, uint8_t)
CB_INT_OPS(i32, int32_t, uint32_t)
CB_INT_OPS(u32, uint32_t, uint32_t)
CB_INT_OPS(i64, int64_t, uint64_t)
CB_INT_OPS(u64, uint64_t, uint64_t)

/* float32/float64 (and bfloat16 below): NaN in a wins, then a > b ? a : b (b on ties) */
#define CB_FLOAT_OPS(P, T)                                                                       \
    CB_REDUCE(P##_sum, T, x + y)                                                                 \
    CB_REDUCE(P##_prod, T, x * y)                                                                \
    CB_REDUCE(P##_max, T, (x != x) ? x : (x > y ? x : y))                                        \
    CB_REDUCE(P##_min, T, (x != x) ? x : (x < y ? x : y))

CB_FLOAT_OPS(f32, float)
CB_FLOAT_OPS(f64, double)

CB_REDUCE(f16_sum, uint16_t, float_to_half(half_to_float(x) + half_to_float(y)))
CB_REDUCE(f16_prod, uint16_t, float_to_half(half_to_float(x) * half_to_float(y)))
/* `|`, not `||`: no short circuit, so the loops stay branch-free and vectorize */
CB_REDUCE(f16_max, uint16_t,
          ((half_to_float(x) >= half_to_float(y)) | (half_to_float(x) != half_to_float(x))) ? x : y)
CB_REDUCE(f16_min, uint16_t,
          ((half_to_float(x) <= half_to_float(y)) | (half_to_float(x) != half_to_float(x))) ? x : y)

CB_REDUCE(bf16_sum, uint16_t, float_to_bf16(bf16_to_float(x) + bf16_to_float(y)))
CB_REDUCE(bf16_prod, uint16_t, float_to_bf16(bf16_to_float(x) * bf16_to_float(y)))
CB_REDUCE(bf16_max, uint16_t,
          (bf16_to_float(x) != bf16_to_float(x)) ? x : (bf16_to_float(x) > bf16_to_float(y) ? x : y))
CB_REDUCE(bf16_min, uint16_t,
          (bf16_to_float(x) != bf16_to_float(x)) ? x : (bf16_to_float(x) < bf16_to_float(y) ? x : y))

#define CB_VARIANTS(P) {P##_3, P##_a, P##_b, P##_aa}
#define CB_TYPE_ROW(P) {CB_VARIANTS(P##_sum), CB_VARIANTS(P##_prod), CB_VARIANTS(P##_max), CB_VARIANTS(P##_min)}

/* [dtype][reduction][variant] */
static const reduce_fn REDUCE_TABLE[CB_NUM_DTYPES][CB_NUM_REDS][4] = {
    [CB_DT_INT8] = CB_TYPE_ROW(i8),       [CB_DT_UINT8] = CB_TYPE_ROW(u8),
    [CB_DT_INT32] = CB_TYPE_ROW(i32),     [CB_DT_UINT32] = CB_TYPE_ROW(u32),
    [CB_DT_INT64] = CB_TYPE_ROW(i64),     [CB_DT_UINT64] = CB_TYPE_ROW(u64),
    [CB_DT_FLOAT16] = CB_TYPE_ROW(f16),   [CB_DT_BFLOAT16] = CB_TYPE_ROW(bf16),
    [CB_DT_FLOAT32] = CB_TYPE_ROW(f32),   [CB_DT_FLOAT64] = CB_TYPE_ROW(f64),
};

static const size_t ITEMSIZE[CB_NUM_DTYPES] = {
    [CB_DT_INT8] = 1, [CB_DT_UINT8] = 1, [CB_DT_INT32] = 4, [CB_DT_UINT32] = 4, [CB_DT_INT64] = 8,
    [CB_DT_UINT64] = 8, [CB_DT_FLOAT16] = 2, [CB_DT_BFLOAT16] = 2, [CB_DT_FLOAT32] = 4,
    [CB_DT_FLOAT64] = 8,
};

enum { VARIANT_DISTINCT, VARIANT_DST_IS_A, VARIANT_DST_IS_B, VARIANT_ALL_SAME, VARIANT_OVERLAP };

static int overlaps(const char *x, const char *y, size_t bytes) {
    return bytes && x < y + bytes && y < x + bytes;
}

static int reduce_variant(const char *d, const char *a, const char *b, size_t bytes) {
    if (d == a && d == b) return VARIANT_ALL_SAME;
    if (d == a) return overlaps(d, b, bytes) ? VARIANT_OVERLAP : VARIANT_DST_IS_A;
    if (d == b) return overlaps(d, a, bytes) ? VARIANT_OVERLAP : VARIANT_DST_IS_B;
    if (overlaps(d, a, bytes) || overlaps(d, b, bytes)) return VARIANT_OVERLAP;
    return VARIANT_DISTINCT;  /* a and b may alias each other: both are only read */
}

int cb_reduce(int dtype, int reduction, void *dst, const void *a, const void *b, long long n) {
    if (dtype < 0 || dtype >= CB_NUM_DTYPES || reduction < 0 || reduction >= CB_NUM_REDS || n < 0)
        return CB_ERR_ARGUMENT;
    int variant = reduce_variant(dst, a, b, (size_t)n * ITEMSIZE[dtype]);
    if (variant == VARIANT_OVERLAP) return CB_ERR_ARGUMENT;
    REDUCE_TABLE[dtype][reduction][variant](dst, a, b, (size_t)n);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* avg: divide by the rank count once, at the end                                              */

#define CB_FINALIZE_INT(NAME, T, MAXV)                                                           \
    CB_CLONES static void NAME(void *d_, size_t n, int nranks) {                                 \
        T *restrict d = (T *)d_;                                                                 \
        if ((unsigned long long)nranks > (unsigned long long)(MAXV)) {                           \
            for (size_t i = 0; i < n; i++) d[i] = 0; /* every value is below the divisor */      \
            return;                                                                              \
        }                                                                                        \
        const T divisor = (T)nranks;                                                             \
        for (size_t i = 0; i < n; i++) d[i] = (T)(d[i] / divisor); /* C truncates toward 0 */   \
    }

CB_FINALIZE_INT(fin_i8, int8_t, INT8_MAX)
CB_FINALIZE_INT(fin_u8, uint8_t, UINT8_MAX)
CB_FINALIZE_INT(fin_i32, int32_t, INT32_MAX)
CB_FINALIZE_INT(fin_u32, uint32_t, UINT32_MAX)
CB_FINALIZE_INT(fin_i64, int64_t, INT64_MAX)
CB_FINALIZE_INT(fin_u64, uint64_t, UINT64_MAX)

CB_CLONES static void fin_f32(void *d_, size_t n, int nranks) {
    float *restrict d = (float *)d_;
    const float divisor = (float)nranks;
    for (size_t i = 0; i < n; i++) d[i] = d[i] / divisor;
}

CB_CLONES static void fin_f64(void *d_, size_t n, int nranks) {
    double *restrict d = (double *)d_;
    const double divisor = (double)nranks;
    for (size_t i = 0; i < n; i++) d[i] = d[i] / divisor;
}

/* numpy divides by the rank count converted to the 16-bit type (np.asarray(n, dtype)) */
CB_CLONES static void fin_f16(void *d_, size_t n, int nranks) {
    uint16_t *restrict d = (uint16_t *)d_;
    const float divisor = half_to_float(float_to_half((float)nranks));
    for (size_t i = 0; i < n; i++) d[i] = float_to_half(half_to_float(d[i]) / divisor);
}

CB_CLONES static void fin_bf16(void *d_, size_t n, int nranks) {
    uint16_t *restrict d = (uint16_t *)d_;
    const float divisor = bf16_to_float(float_to_bf16((float)nranks));
    for (size_t i = 0; i < n; i++) d[i] = float_to_bf16(bf16_to_float(d[i]) / divisor);
}

typedef void (*finalize_fn)(void *data, size_t n, int nranks);
static const finalize_fn FINALIZE_TABLE[CB_NUM_DTYPES] = {
    [CB_DT_INT8] = fin_i8,       [CB_DT_UINT8] = fin_u8,       [CB_DT_INT32] = fin_i32,
    [CB_DT_UINT32] = fin_u32,    [CB_DT_INT64] = fin_i64,      [CB_DT_UINT64] = fin_u64,
    [CB_DT_FLOAT16] = fin_f16,   [CB_DT_BFLOAT16] = fin_bf16,  [CB_DT_FLOAT32] = fin_f32,
    [CB_DT_FLOAT64] = fin_f64,
};

int cb_finalize_avg(int dtype, void *data, long long n, int nranks) {
    if (dtype < 0 || dtype >= CB_NUM_DTYPES || n < 0 || nranks < 1) return CB_ERR_ARGUMENT;
    if (nranks > 1) FINALIZE_TABLE[dtype](data, (size_t)n, nranks);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Native collectives                                                                           */

static int call_collective(int collective, MPI_Comm comm, const void *send, void *recv, int count,
                           MPI_Datatype datatype, MPI_Op op, int root) {
    switch (collective) {
    case CB_COLL_ALLREDUCE: return MPI_Allreduce(send, recv, count, datatype, op, comm);
    case CB_COLL_ALLGATHER: return MPI_Allgather(send, count, datatype, recv, count, datatype, comm);
    case CB_COLL_REDUCE_SCATTER: return MPI_Reduce_scatter_block(send, recv, count, datatype, op, comm);
    case CB_COLL_BROADCAST: return MPI_Bcast(recv, count, datatype, root, comm);
    case CB_COLL_REDUCE: return MPI_Reduce(send, recv, count, datatype, op, root, comm);
    case CB_COLL_ALLTOALL: return MPI_Alltoall(send, count, datatype, recv, count, datatype, comm);
    default: return CB_ERR_ARGUMENT;
    }
}

#if MPI_VERSION >= 4
static int call_collective_c(int collective, MPI_Comm comm, const void *send, void *recv,
                             MPI_Count count, MPI_Datatype datatype, MPI_Op op, int root) {
    switch (collective) {
    case CB_COLL_ALLREDUCE: return MPI_Allreduce_c(send, recv, count, datatype, op, comm);
    case CB_COLL_ALLGATHER: return MPI_Allgather_c(send, count, datatype, recv, count, datatype, comm);
    case CB_COLL_REDUCE_SCATTER: return MPI_Reduce_scatter_block_c(send, recv, count, datatype, op, comm);
    case CB_COLL_BROADCAST: return MPI_Bcast_c(recv, count, datatype, root, comm);
    case CB_COLL_REDUCE: return MPI_Reduce_c(send, recv, count, datatype, op, root, comm);
    case CB_COLL_ALLTOALL: return MPI_Alltoall_c(send, count, datatype, recv, count, datatype, comm);
    default: return CB_ERR_ARGUMENT;
    }
}
#endif

/* ITERATIONS calls of one collective; *elapsed = total seconds; when SAMPLES is not NULL it
 * receives each call's seconds. COUNT follows MPI (per rank for allgather/reduce_scatter_block,
 * per peer for alltoall); IN_PLACE passes MPI_IN_PLACE as the send buffer (the caller decides
 * where MPI allows it). */
int cb_collective_loop(int collective, MPI_Comm comm, const void *send, void *recv, long long count,
                       MPI_Datatype datatype, MPI_Op op, int root, int in_place,
                       long long iterations, double *samples, double *elapsed) {
    if (count < 0 || iterations < 0 || collective < CB_COLL_ALLREDUCE || collective > CB_COLL_ALLTOALL)
        return CB_ERR_ARGUMENT;
    const void *sbuf = in_place ? MPI_IN_PLACE : send;
    int rc = MPI_SUCCESS;
    if (count <= 0x7fffffffLL) {  /* the plain call, as a C benchmark would make it */
        int n = (int)count;
        if (samples) {
            for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++) {
                double start = now();
                rc = call_collective(collective, comm, sbuf, recv, n, datatype, op, root);
                samples[i] = now() - start;
            }
            *elapsed = 0.0;
            for (long long i = 0; i < iterations; i++) *elapsed += samples[i];
        } else {
            double start = now();
            for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++)
                rc = call_collective(collective, comm, sbuf, recv, n, datatype, op, root);
            *elapsed = now() - start;
        }
        return rc;
    }
#if MPI_VERSION >= 4
    double start = now();
    for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++) {
        double t = now();
        rc = call_collective_c(collective, comm, sbuf, recv, (MPI_Count)count, datatype, op, root);
        if (samples) samples[i] = now() - t;
    }
    *elapsed = now() - start;
    return rc;
#else
    return CB_ERR_ARGUMENT;  /* more than INT_MAX elements needs MPI 4's large-count calls */
#endif
}

/* ITERATIONS calls of MPI_Alltoallv with the caller's counts and displacements (elements; out of
 * place only), timed like cb_collective_loop. */
int cb_alltoallv_loop(MPI_Comm comm, const void *send, const int *sendcounts, const int *sdispls,
                      void *recv, const int *recvcounts, const int *rdispls, MPI_Datatype datatype,
                      long long iterations, double *samples, double *elapsed) {
    if (iterations < 0 || !sendcounts || !sdispls || !recvcounts || !rdispls) return CB_ERR_ARGUMENT;
    int rc = MPI_SUCCESS;
    double start = now();
    for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++) {
        double t = samples ? now() : 0.0;
        rc = MPI_Alltoallv(send, sendcounts, sdispls, datatype, recv, recvcounts, rdispls, datatype,
                           comm);
        if (samples) samples[i] = now() - t;
    }
    *elapsed = now() - start;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Schedules                                                                                   */

typedef struct {
    int kind;
    int peer;
    int count;          /* elements (messages), or n for local ops */
    char *p0, *p1, *p2;
    size_t bytes;       /* copies */
    reduce_fn reduce;
} cb_op;

typedef struct {
    int tag, nrecv, nsend, nlocal;
    cb_op *ops;
} cb_step;

struct cb_plan {
    MPI_Comm comm;
    MPI_Datatype move_type;
    int nranks, dtype;
    long long nsteps;
    cb_step *steps;
    cb_op *ops;
    MPI_Request *requests;
};

void cb_plan_free(cb_plan *plan) {
    if (!plan) return;
    free(plan->steps);
    free(plan->ops);
    free(plan->requests);
    free(plan);
}

static cb_plan *plan_error(cb_plan *plan, char *error, int error_len, const char *message, long long where) {
    if (error && error_len > 0) snprintf(error, (size_t)error_len, "%s (op %lld)", message, where);
    cb_plan_free(plan);
    return NULL;
}

/* Bind the flattened tables (see native_executor.h) to pointers once; NULL plus a message in
 * ERROR when the tables are inconsistent or need something the native path does not do. */
cb_plan *cb_plan_create(MPI_Comm comm, MPI_Datatype move_type, int dtype, int reduction, int nranks,
                        void *input, void *output, void *scratch, long long nsteps,
                        const int64_t *steps, long long nops, const int64_t *ops, char *error,
                        int error_len) {
    if (dtype < 0 || dtype >= CB_NUM_DTYPES || reduction < 0 || reduction > CB_RED_NONE ||
        nsteps < 0 || nops < 0 || nranks < 1)
        return plan_error(NULL, error, error_len, "bad plan arguments", -1);
    cb_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return plan_error(NULL, error, error_len, "out of memory", -1);
    plan->comm = comm;
    plan->move_type = move_type;
    plan->nranks = nranks;
    plan->dtype = dtype;
    plan->nsteps = nsteps;
    plan->steps = calloc((size_t)(nsteps > 0 ? nsteps : 1), sizeof *plan->steps);
    plan->ops = calloc((size_t)(nops > 0 ? nops : 1), sizeof *plan->ops);
    if (!plan->steps || !plan->ops) return plan_error(plan, error, error_len, "out of memory", -1);
    char *base[3] = {input, output, scratch};
    size_t itemsize = ITEMSIZE[dtype];
    long long max_messages = 0;
    for (long long s = 0; s < nsteps; s++) {
        const int64_t *row = steps + s * CB_STEP_FIELDS;
        int64_t first = row[1], nrecv = row[2], nsend = row[3], nlocal = row[4];
        if (first < 0 || nrecv < 0 || nsend < 0 || nlocal < 0 || first + nrecv + nsend + nlocal > nops ||
            row[0] < 0 || row[0] > 0x7fff)
            return plan_error(plan, error, error_len, "bad step", s);
        plan->steps[s] = (cb_step){(int)row[0], (int)nrecv, (int)nsend, (int)nlocal, plan->ops + first};
        if (nrecv + nsend > max_messages) max_messages = nrecv + nsend;
        for (int64_t k = first; k < first + nrecv + nsend + nlocal; k++) {
            const int64_t *f = ops + k * CB_OP_FIELDS;
            int64_t kind = f[0], length = f[2];
            int expected = k < first + nrecv ? CB_OP_RECV : (k < first + nrecv + nsend ? CB_OP_SEND : -1);
            if (expected >= 0 ? kind != expected : (kind != CB_OP_COPY && kind != CB_OP_REDUCE && kind != CB_OP_FINALIZE))
                return plan_error(plan, error, error_len, "op of the wrong kind for its place in the step", k);
            if (length < 0 || length > 0x7fffffffLL)
                return plan_error(plan, error, error_len, "length out of range for an MPI count", k);
            int nptr = kind == CB_OP_REDUCE ? 3 : (kind == CB_OP_COPY ? 2 : 1);
            char *p[3] = {NULL, NULL, NULL};
            for (int j = 0; j < nptr; j++) {
                int64_t buf = f[3 + 2 * j], off = f[4 + 2 * j];
                if (buf < 0 || buf > 2 || off < 0 || (length > 0 && !base[buf]))
                    return plan_error(plan, error, error_len, "bad buffer reference", k);
                p[j] = base[buf] ? base[buf] + (size_t)off * itemsize : NULL;
            }
            cb_op *op = &plan->ops[k];
            *op = (cb_op){(int)kind, (int)f[1], (int)length, p[0], p[1], p[2], (size_t)length * itemsize, NULL};
            if ((kind == CB_OP_RECV || kind == CB_OP_SEND) && (f[1] < 0 || f[1] >= nranks))
                return plan_error(plan, error, error_len, "peer out of range", k);
            if (kind == CB_OP_REDUCE) {
                if (reduction == CB_RED_NONE)
                    return plan_error(plan, error, error_len, "a reduction in a schedule without an operator", k);
                int variant = reduce_variant(p[0], p[1], p[2], op->bytes);
                if (variant == VARIANT_OVERLAP)
                    return plan_error(plan, error, error_len, "a reduction whose output partly overlaps an input", k);
                op->reduce = REDUCE_TABLE[dtype][reduction][variant];
            }
        }
    }
    plan->requests = calloc((size_t)(max_messages > 0 ? max_messages : 1), sizeof *plan->requests);
    if (!plan->requests) return plan_error(plan, error, error_len, "out of memory", -1);
    return plan;
}

static inline int run_once(const cb_plan *plan) {
    MPI_Comm comm = plan->comm;
    MPI_Datatype type = plan->move_type;
    MPI_Request *requests = plan->requests;
    for (long long s = 0; s < plan->nsteps; s++) {
        const cb_step *step = &plan->steps[s];
        const cb_op *op = step->ops;
        int nmsg = step->nrecv + step->nsend, rc;
        for (int k = 0; k < step->nrecv; k++, op++)
            if ((rc = MPI_Irecv(op->p0, op->count, type, op->peer, step->tag, comm, &requests[k])) != MPI_SUCCESS)
                return rc;
        for (int k = step->nrecv; k < nmsg; k++, op++)
            if ((rc = MPI_Isend(op->p0, op->count, type, op->peer, step->tag, comm, &requests[k])) != MPI_SUCCESS)
                return rc;
        if (nmsg && (rc = MPI_Waitall(nmsg, requests, MPI_STATUSES_IGNORE)) != MPI_SUCCESS)
            return rc;
        for (int k = 0; k < step->nlocal; k++, op++) {
            if (op->kind == CB_OP_REDUCE)
                op->reduce(op->p0, op->p1, op->p2, (size_t)op->count);
            else if (op->kind == CB_OP_COPY)
                memmove(op->p0, op->p1, op->bytes);  /* numpy's copyto also behaves as memmove */
            else if (plan->nranks > 1)
                FINALIZE_TABLE[plan->dtype](op->p0, (size_t)op->count, plan->nranks);
        }
    }
    return MPI_SUCCESS;
}

/* ITERATIONS runs of the plan; *elapsed = total seconds, SAMPLES (if not NULL) each run's. */
int cb_plan_run(cb_plan *plan, long long iterations, double *samples, double *elapsed) {
    if (!plan || iterations < 0) return CB_ERR_ARGUMENT;
    int rc = MPI_SUCCESS;
    if (samples) {
        *elapsed = 0.0;
        for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++) {
            double start = now();
            rc = run_once(plan);
            samples[i] = now() - start;
            *elapsed += samples[i];
        }
    } else {
        double start = now();
        for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++) rc = run_once(plan);
        *elapsed = now() - start;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Traced runs (collbench trace): a copy of run_once with a timestamp at each phase of each    */
/* step. A separate function so the timed loops above carry no tracing branch at all.          */

static inline int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + (int64_t)t.tv_nsec;
}

static int run_traced(const cb_plan *plan, int64_t *stamps) {
    MPI_Comm comm = plan->comm;
    MPI_Datatype type = plan->move_type;
    MPI_Request *requests = plan->requests;
    for (long long s = 0; s < plan->nsteps; s++, stamps += CB_TRACE_FIELDS) {
        const cb_step *step = &plan->steps[s];
        const cb_op *op = step->ops;
        int nmsg = step->nrecv + step->nsend, rc;
        stamps[0] = now_ns();
        for (int k = 0; k < step->nrecv; k++, op++)
            if ((rc = MPI_Irecv(op->p0, op->count, type, op->peer, step->tag, comm, &requests[k])) != MPI_SUCCESS)
                return rc;
        for (int k = step->nrecv; k < nmsg; k++, op++)
            if ((rc = MPI_Isend(op->p0, op->count, type, op->peer, step->tag, comm, &requests[k])) != MPI_SUCCESS)
                return rc;
        stamps[1] = now_ns();
        if (nmsg && (rc = MPI_Waitall(nmsg, requests, MPI_STATUSES_IGNORE)) != MPI_SUCCESS)
            return rc;
        stamps[2] = now_ns();
        for (int k = 0; k < step->nlocal; k++, op++) {
            if (op->kind == CB_OP_REDUCE)
                op->reduce(op->p0, op->p1, op->p2, (size_t)op->count);
            else if (op->kind == CB_OP_COPY)
                memmove(op->p0, op->p1, op->bytes);
            else if (plan->nranks > 1)
                FINALIZE_TABLE[plan->dtype](op->p0, (size_t)op->count, plan->nranks);
        }
        stamps[3] = now_ns();
    }
    return MPI_SUCCESS;
}

int cb_plan_trace(cb_plan *plan, long long iterations, int64_t *stamps) {
    if (!plan || iterations < 0 || !stamps) return CB_ERR_ARGUMENT;
    int rc = MPI_SUCCESS;
    for (long long i = 0; i < iterations && rc == MPI_SUCCESS; i++)
        rc = run_traced(plan, stamps + i * plan->nsteps * CB_TRACE_FIELDS);
    return rc;
}
