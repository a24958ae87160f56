/* Minimal C baselines that collbench's Python paths are measured against (benchmarks/):
 *   collbench_allreduce_loop: the back-to-back MPI_Allreduce loop `collbench run allreduce` times;
 *   collbench_exchange_loop:  steps of one non-blocking send + receive pair and a Waitall, the
 *                             shape of one schedule step in the executor.
 *
 * Two ways to use them:
 *   - as a program:   mpicc -O2 -o allreduce_loop csrc/mpi_baselines.c
 *                     mpiexec -n 2 ./allreduce_loop BYTES ITERS WARMUP single|multiple [inplace]
 *   - as a library loaded into an mpi4py process, so C and collbench are timed alternately in the
 *     same processes, on the same MPI state:
 *                     mpicc -O2 -shared -fPIC -DCOLLBENCH_LOOP_LIBRARY -o libbaselines.so ...
 *
 * Times are in microseconds, aggregated like collbench's default (max over ranks).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-op microseconds of ITERS back-to-back float32 sum allreduces of BYTES bytes, after WARMUP
 * untimed ones and a barrier; the maximum over the ranks of comm (returned on every rank). */
double collbench_allreduce_loop(MPI_Comm comm, long bytes, long iters, long warmup, int inplace) {
    long count = bytes / (long)sizeof(float);
    size_t alloc = (size_t)(count > 0 ? count : 1) * sizeof(float);
    alloc = (alloc + 63) / 64 * 64;
    float *send = aligned_alloc(64, alloc);
    float *recv = aligned_alloc(64, alloc);
    for (long i = 0; i < count; i++) send[i] = recv[i] = (float)(i % 7);
    const void *sbuf = inplace ? MPI_IN_PLACE : send;

    for (long i = 0; i < warmup; i++)
        MPI_Allreduce(sbuf, recv, (int)count, MPI_FLOAT, MPI_SUM, comm);
    MPI_Barrier(comm);
    double start = MPI_Wtime();
    for (long i = 0; i < iters; i++)
        MPI_Allreduce(sbuf, recv, (int)count, MPI_FLOAT, MPI_SUM, comm);
    double per_op = (MPI_Wtime() - start) / (double)iters, slowest;
    MPI_Allreduce(&per_op, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
    free(send);
    free(recv);
    return slowest * 1e6;
}

/* Per-step microseconds of STEPS steps, each an MPI_Irecv + MPI_Isend of BYTES with PEER and a
 * MPI_Waitall, repeated ITERS times after a barrier; max over the ranks of comm. */
double collbench_exchange_loop(MPI_Comm comm, int peer, long bytes, long steps, long iters) {
    char *send = calloc((size_t)(bytes > 0 ? bytes : 1), 1);
    char *recv = calloc((size_t)(bytes > 0 ? bytes : 1), 1);
    MPI_Request requests[2];
    MPI_Barrier(comm);
    double start = MPI_Wtime();
    for (long i = 0; i < iters; i++) {
        for (long s = 0; s < steps; s++) {
            int tag = 1000 + (int)(s % 30000);
            MPI_Irecv(recv, (int)bytes, MPI_BYTE, peer, tag, comm, &requests[0]);
            MPI_Isend(send, (int)bytes, MPI_BYTE, peer, tag, comm, &requests[1]);
            MPI_Waitall(2, requests, MPI_STATUSES_IGNORE);
        }
    }
    double per_step = (MPI_Wtime() - start) / (double)(iters * steps), slowest;
    MPI_Allreduce(&per_step, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
    free(send);
    free(recv);
    return slowest * 1e6;
}

#ifndef COLLBENCH_LOOP_LIBRARY
int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s BYTES ITERS WARMUP single|multiple [inplace]\n", argv[0]);
        return 2;
    }
    int requested = strcmp(argv[4], "multiple") == 0 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE;
    int provided, rank;
    MPI_Init_thread(&argc, &argv, requested, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    double us = collbench_allreduce_loop(MPI_COMM_WORLD, atol(argv[1]), atol(argv[2]), atol(argv[3]),
                                         argc > 5 && strcmp(argv[5], "inplace") == 0);
    if (rank == 0)
        printf("%s %s %d %.4f\n", argv[1], argv[2], provided, us);
    MPI_Finalize();
    return 0;
}
#endif
