"""nccl-tests' size/count conventions and bandwidth definitions.

algbw = bytes / time; busbw = algbw × a collective-specific factor that makes the number
comparable to link bandwidth whatever the rank count (nccl-tests doc/PERFORMANCE.md).
GB/s here are decimal (1e9 bytes per second), sizes on the command line binary, as in nccl-tests.
The per-collective facts live in the collective descriptors (``collbench.algorithms.collectives``);
these functions are the stable names the rest of collbench calls.
"""

from __future__ import annotations

from .algorithms import Collective
from .algorithms.collectives import descriptor


def bus_factor(collective: Collective, nranks: int) -> float:
    """busbw/algbw: 2(n-1)/n for allreduce, (n-1)/n for allgather, reduce_scatter and alltoall,
    else 1."""
    return descriptor(collective).bus_factor(nranks)


def count_for_size(collective: Collective, size: int, itemsize: int, nranks: int) -> int:
    """Element count nccl-tests would pass for a sweep ``size`` (bytes).

    For allgather, reduce_scatter and alltoall the size is the whole buffer of ``nranks``
    blocks and the count is per block (per rank, per peer), rounded down to a multiple of 16
    bytes exactly like nccl-tests, so a row's size may be smaller than the requested size.
    """
    return descriptor(collective).count_for_size(size, itemsize, nranks)


def bytes_for_count(collective: Collective, count: int, itemsize: int, nranks: int) -> int:
    """The size nccl-tests reports for a count: the larger of send and receive bytes per rank."""
    return descriptor(collective).bytes_for_count(count, itemsize, nranks)


def bandwidths(collective: Collective, nbytes: int, seconds: float, nranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9) for ``nbytes`` moved in ``seconds``."""
    if seconds <= 0:
        return 0.0, 0.0
    algbw = nbytes / seconds / 1e9
    return algbw, algbw * bus_factor(collective, nranks)
