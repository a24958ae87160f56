/* Minimal C baseline for collbench's harness overhead: the same back-to-back MPI_Allreduce loop
 * that `collbench run allreduce` times, with nothing in between.
 *
 *   mpicc -O2 -o allreduce_loop csrc/mpi_allreduce_loop.c
 *   mpiexec -n 2 ./allreduce_loop BYTES ITERS WARMUP single|multiple [inplace]
 *
 * Prints one line on rank 0: bytes, iterations, thread level provided, and the time per
 * operation in microseconds, aggregated as collbench's default (max over ranks).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s BYTES ITERS WARMUP single|multiple [inplace]\n", argv[0]);
        return 2;
    }
    long bytes = atol(argv[1]);
    long iters = atol(argv[2]);
    long warmup = atol(argv[3]);
    int requested = strcmp(argv[4], "multiple") == 0 ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE;
    int inplace = argc > 5 && strcmp(argv[5], "inplace") == 0;
    int provided, rank;
    MPI_Init_thread(&argc, &argv, requested, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    long count = bytes / (long)sizeof(float);
    float *send = aligned_alloc(64, (size_t)(count > 0 ? count : 1) * sizeof(float) + 64);
    float *recv = aligned_alloc(64, (size_t)(count > 0 ? count : 1) * sizeof(float) + 64);
    for (long i = 0; i < count; i++) send[i] = recv[i] = (float)(i % 7);
    const void *sbuf = inplace ? MPI_IN_PLACE : send;

    for (long i = 0; i < warmup; i++)
        MPI_Allreduce(sbuf, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    for (long i = 0; i < iters; i++)
        MPI_Allreduce(sbuf, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    double per_op = (MPI_Wtime() - start) / (double)iters;

    double slowest;
    MPI_Reduce(&per_op, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
        printf("%ld %ld %d %.4f\n", bytes, iters, provided, slowest * 1e6);
    free(send);
    free(recv);
    MPI_Finalize();
    return 0;
}
