"""nccl-tests' size/count conventions and bandwidth definitions, in one place.

algbw = bytes / time; busbw = algbw × a collective-specific factor that makes the number
comparable to link bandwidth whatever the rank count (nccl-tests doc/PERFORMANCE.md).
GB/s here are decimal (1e9 bytes per second), sizes on the command line binary, as in nccl-tests.
"""

from __future__ import annotations

from .algorithms import Collective


def bus_factor(collective: Collective, nranks: int) -> float:
    """busbw/algbw: 2(n-1)/n for allreduce, (n-1)/n for allgather and reduce_scatter, else 1."""
    if collective is Collective.ALLREDUCE:
        return 2.0 * (nranks - 1) / nranks
    if collective in (Collective.ALLGATHER, Collective.REDUCE_SCATTER):
        return (nranks - 1) / nranks
    return 1.0


def count_for_size(collective: Collective, size: int, itemsize: int, nranks: int) -> int:
    """Element count nccl-tests would pass for a sweep ``size`` (bytes).

    For allgather and reduce_scatter the size is the whole gathered/scattered buffer and the
    count is per rank, rounded down to a multiple of 16 bytes exactly like nccl-tests, so a
    row's size may be smaller than the requested size.
    """
    if collective in (Collective.ALLGATHER, Collective.REDUCE_SCATTER):
        per_rank = (size // itemsize) // nranks
        align = max(1, 16 // itemsize)
        return per_rank - per_rank % align
    return size // itemsize


def bytes_for_count(collective: Collective, count: int, itemsize: int, nranks: int) -> int:
    """The size nccl-tests reports for a count: the larger of send and receive bytes per rank."""
    if collective in (Collective.ALLGATHER, Collective.REDUCE_SCATTER):
        return count * itemsize * nranks
    return count * itemsize


def bandwidths(collective: Collective, nbytes: int, seconds: float, nranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9) for ``nbytes`` moved in ``seconds``."""
    if seconds <= 0:
        return 0.0, 0.0
    algbw = nbytes / seconds / 1e9
    return algbw, algbw * bus_factor(collective, nranks)
