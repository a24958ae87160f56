"""busbw/algbw factors and count conventions against hand-computed nccl-tests values."""

import pytest

from collbench.algorithms import Collective
from collbench.metrics import bandwidths, bus_factor, bytes_for_count, count_for_size

AR, AG, RS, BC, RD, A2A = (Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER,
                           Collective.BROADCAST, Collective.REDUCE, Collective.ALLTOALL)


@pytest.mark.parametrize("coll, n, factor", [
    (AR, 1, 0.0), (AR, 2, 1.0), (AR, 4, 1.5), (AR, 8, 1.75), (AR, 3, 4 / 3),
    (AG, 4, 0.75), (RS, 8, 0.875), (AG, 1, 0.0), (BC, 16, 1.0), (RD, 5, 1.0),
    (A2A, 4, 0.75), (A2A, 1, 0.0),
])
def test_bus_factor(coll, n, factor):
    assert bus_factor(coll, n) == pytest.approx(factor)


def test_bandwidths_hand_computed():
    # 1 GiB allreduce in 10 ms on 8 ranks: algbw 107.374 GB/s, busbw × 1.75
    algbw, busbw = bandwidths(AR, 1 << 30, 0.010, 8)
    assert algbw == pytest.approx(107.3741824)
    assert busbw == pytest.approx(107.3741824 * 1.75)
    assert bandwidths(AR, 8, 0.0, 2) == (0.0, 0.0)


def test_counts_follow_nccl_tests():
    # allreduce: the whole buffer
    assert count_for_size(AR, 1 << 20, 4, 4) == 262144
    # allgather/reduce_scatter: per rank, rounded down to 16 bytes
    assert count_for_size(AG, 1 << 20, 4, 4) == 65536
    assert count_for_size(AG, 100, 4, 3) == 8          # 25 elements / 3 = 8, multiple of 4
    assert count_for_size(RS, 100, 8, 3) == 4          # 12 / 3 = 4, multiple of 2
    assert count_for_size(AG, 8, 4, 4) == 0
    assert bytes_for_count(AG, 8, 4, 3) == 96
    assert bytes_for_count(AR, 8, 4, 3) == 32
    # alltoall (alltoall_perf): the size is count x nranks x elt, count per peer, rounded like allgather
    assert count_for_size(A2A, 100, 4, 3) == 8
    assert bytes_for_count(A2A, 8, 4, 3) == 96
