/* collbench's native execution path: the C side of collbench/native.py.
 *
 * The constants below are the only contract between Python and C: collbench/native.py parses
 * every `#define CB_<NAME> <int>` of this file, so the two sides cannot disagree.
 *
 * A flattened schedule is two int64 tables (row-major):
 *   steps[nsteps][CB_STEP_FIELDS] = { tag, first_op, nrecv, nsend, nlocal }
 *       the step's ops are ops[first_op ..]: its receives, then its sends, then its local ops;
 *   ops[nops][CB_OP_FIELDS] = { kind, peer, length, buf0, off0, buf1, off1, buf2, off2 }
 *       lengths and offsets are in elements; buffers are CB_BUF_*; meaning of the slots by kind:
 *         CB_OP_RECV     buf0/off0 = destination, peer = source rank
 *         CB_OP_SEND     buf0/off0 = source,      peer = destination rank
 *         CB_OP_COPY     buf0/off0 = destination, buf1/off1 = source
 *         CB_OP_REDUCE   buf0/off0 = destination, buf1/off1 = a, buf2/off2 = b  (dst = a op b)
 *         CB_OP_FINALIZE buf0/off0 = the avg result, divided by the rank count in place
 */
#ifndef COLLBENCH_NATIVE_EXECUTOR_H
#define COLLBENCH_NATIVE_EXECUTOR_H

/* Bumped whenever a signature or a table layout changes (the loader checks it). */
#define CB_ABI_VERSION 1

/* element types (the order of collbench.dtypes.DTYPES) */
#define CB_DT_INT8 0
#define CB_DT_UINT8 1
#define CB_DT_INT32 2
#define CB_DT_UINT32 3
#define CB_DT_INT64 4
#define CB_DT_UINT64 5
#define CB_DT_FLOAT16 6
#define CB_DT_BFLOAT16 7
#define CB_DT_FLOAT32 8
#define CB_DT_FLOAT64 9
#define CB_NUM_DTYPES 10

/* reduction operators (avg reduces with CB_OP_SUM and ends with a CB_OP_FINALIZE op) */
#define CB_RED_SUM 0
#define CB_RED_PROD 1
#define CB_RED_MAX 2
#define CB_RED_MIN 3
#define CB_RED_NONE 4
#define CB_NUM_REDS 4

/* native collectives timed by cb_collective_loop */
#define CB_COLL_ALLREDUCE 0
#define CB_COLL_ALLGATHER 1
#define CB_COLL_REDUCE_SCATTER 2
#define CB_COLL_BROADCAST 3
#define CB_COLL_REDUCE 4
#define CB_COLL_ALLTOALL 5
#define CB_COLL_ALLTOALLV 6   /* timed by cb_alltoallv_loop (per-peer counts) */

/* schedule tables */
#define CB_BUF_INPUT 0
#define CB_BUF_OUTPUT 1
#define CB_BUF_SCRATCH 2
#define CB_OP_RECV 0
#define CB_OP_SEND 1
#define CB_OP_COPY 2
#define CB_OP_REDUCE 3
#define CB_OP_FINALIZE 4
#define CB_STEP_FIELDS 5
#define CB_OP_FIELDS 9
#define CB_TRACE_FIELDS 4

/* error codes besides MPI's own (which are returned unchanged) */
#define CB_ERR_ARGUMENT (-1)
#define CB_ERR_MEMORY (-2)

#ifndef CB_NO_MPI_PROTOTYPES
#include <mpi.h>
#include <stdint.h>

int cb_abi_version(void);
int cb_collective_loop(int collective, MPI_Comm comm, const void *send, void *recv, long long count,
                       MPI_Datatype datatype, MPI_Op op, int root, int in_place,
                       long long iterations, double *samples, double *elapsed);
int cb_alltoallv_loop(MPI_Comm comm, const void *send, const int *sendcounts, const int *sdispls,
                      void *recv, const int *recvcounts, const int *rdispls, MPI_Datatype datatype,
                      long long iterations, double *samples, double *elapsed);
typedef struct cb_plan cb_plan;
cb_plan *cb_plan_create(MPI_Comm comm, MPI_Datatype move_type, int dtype, int reduction, int nranks,
                        void *input, void *output, void *scratch, long long nsteps,
                        const int64_t *steps, long long nops, const int64_t *ops, char *error,
                        int error_len);
int cb_plan_run(cb_plan *plan, long long iterations, double *samples, double *elapsed);
void cb_plan_free(cb_plan *plan);
/* Traced runs (collbench trace): STAMPS[iterations][nsteps][CB_TRACE_FIELDS] receive, per step,
 * CLOCK_MONOTONIC nanoseconds at: post, all posted, all completed, local work done. */
int cb_plan_trace(cb_plan *plan, long long iterations, int64_t *stamps);
int cb_reduce(int dtype, int reduction, void *dst, const void *a, const void *b, long long n);
int cb_finalize_avg(int dtype, void *data, long long n, int nranks);
#endif

#endif
