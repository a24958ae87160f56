"""The collective descriptors (algorithms/collectives.py): complete, self-consistent, and the one
source every consumer (buffer lengths, in-place aliasing, metrics, validation, the verifier, the
simulator) reads its facts from."""

from __future__ import annotations

import numpy as np
import pytest

from collbench.algorithms import Buf, Collective, Problem, inplace_input_offset, reference_result
from collbench.algorithms.collectives import block_table, descriptor, source_mask
from collbench.algorithms.vcounts import Skew
from collbench.algorithms.verify import expected_output as symbolic_expected
from collbench.dtypes import DTYPES
from collbench.metrics import bus_factor, bytes_for_count, count_for_size
from collbench.validation import expected_output, make_input

ALL = list(Collective)


@pytest.mark.parametrize("collective", ALL, ids=lambda c: c.value)
def test_every_collective_has_a_consistent_descriptor(collective):
    desc = descriptor(collective)
    assert desc.collective is collective
    assert collective.reduces is desc.reduces and collective.rooted is desc.rooted
    for p in range(1, 7):
        for count in (0, 1, 3):
            for root in sorted({0, p - 1}) if desc.rooted else [0]:
                problem = Problem(collective, p, count, root)
                for r in range(p):
                    blocks = desc.blocks(problem, r)
                    assert (blocks is not None) == desc.has_result(problem, r)
                    if blocks is None:
                        continue
                    pos = 0
                    for block in blocks:  # the blocks tile the output, in order
                        assert block.out_offset == pos
                        pos += block.length
                        assert 0 <= block.in_offset
                        assert block.in_offset + block.length <= problem.input_len(r)
                        assert all(0 <= q < p for q in block.sources) and len(block.sources) >= 1
                        assert desc.reduces or len(block.sources) == 1
                    assert pos == problem.output_len(r)
                    if desc.same_result:
                        assert blocks == desc.blocks(problem, 0)


def test_lengths_and_inplace_aliasing_follow_mpi_and_nccl():
    p, c, r = 4, 5, 2
    table = {  # collective: (input len, output len, in-place host, offset)
        Collective.ALLREDUCE: (c, c, Buf.OUTPUT, 0),
        Collective.ALLGATHER: (c, c * p, Buf.OUTPUT, r * c),
        Collective.REDUCE_SCATTER: (c * p, c, Buf.INPUT, r * c),
        Collective.BROADCAST: (c, c, Buf.OUTPUT, 0),
        Collective.REDUCE: (c, c, Buf.OUTPUT, 0),
        Collective.ALLTOALL: (c * p, c * p, Buf.OUTPUT, 0),   # MPI_IN_PLACE: one buffer
        # default skew (Zipf s=1): every rank sends 5+2+1+1, rank 2 receives 4 x 1; in place
        # the larger buffer (the input here) hosts the output at its start
        Collective.ALLTOALLV: (9, 4, Buf.INPUT, 0),
    }
    assert set(table) == set(Collective)
    for coll, (n_in, n_out, host, offset) in table.items():
        problem = Problem(coll, p, c)
        assert (problem.input_len(r), problem.output_len(r)) == (n_in, n_out), coll
        assert inplace_input_offset(problem, r) == (host, offset), coll


def test_alltoall_sweep_conventions_follow_nccl_tests_alltoall_perf():
    # the size is the whole per-rank buffer (count x nranks x elt), count per peer rounded
    # down to 16 bytes like allgather; busbw factor (n-1)/n
    A = Collective.ALLTOALL
    assert count_for_size(A, 1 << 20, 4, 4) == 65536
    assert count_for_size(A, 100, 4, 3) == 8
    assert count_for_size(A, 8, 4, 4) == 0
    assert bytes_for_count(A, 8, 4, 3) == 96
    assert bus_factor(A, 4) == pytest.approx(0.75) and bus_factor(A, 1) == 0.0


def test_alltoall_postcondition_is_the_transpose():
    p, c = 3, 2
    problem = Problem(Collective.ALLTOALL, p, c)
    blocks = descriptor(Collective.ALLTOALL).blocks(problem, 1)
    assert [(b.out_offset, b.length, list(b.sources), b.in_offset) for b in blocks] == [
        (0, 2, [0], 2), (2, 2, [1], 2), (4, 2, [2], 2)]
    # the verifier's pieces: (length, source element, contributor mask)
    assert symbolic_expected(problem, 1) == [(2, 2, 1), (2, 2, 2), (2, 2, 4)]
    ins = [np.arange(q * 10, q * 10 + p * c) for q in range(p)]
    got = reference_result("alltoall", ins, "sum")
    assert [x.tolist() for x in got] == [[0, 1, 10, 11, 20, 21], [2, 3, 12, 13, 22, 23],
                                          [4, 5, 14, 15, 24, 25]]


@pytest.mark.parametrize("dtype", ["float32", "int8", "bfloat16", "uint64"])
@pytest.mark.parametrize("p", [1, 2, 5])
def test_alltoall_validation_expects_block_r_of_every_input(dtype, p):
    dt, count = DTYPES[dtype], 37
    inputs = [make_input(Collective.ALLTOALL, dt, None, p, q, count * p, seed=4) for q in range(p)]
    for r in range(p):
        want = np.concatenate([inputs[q][r * count:(r + 1) * count] for q in range(p)])
        got = expected_output(Collective.ALLTOALL, dt, None, p, r, count, seed=4)
        assert got.dtype == want.dtype and np.array_equal(got.view(np.uint8), want.view(np.uint8))
    assert expected_output(Collective.ALLTOALL, dt, None, p, 0, 0, seed=4).size == 0


def test_source_masks():
    assert source_mask(range(0, 3)) == 0b111
    assert source_mask(range(2, 3)) == 0b100
    assert source_mask(range(0)) == 0
    assert source_mask([1, 3]) == 0b1010


def test_parse_spellings_and_alltoallv_is_its_own_collective_not_an_alias():
    for name in ("alltoall", "all_to_all", "All-To-All"):
        assert Collective.parse(name) is Collective.ALLTOALL
    for name in ("alltoallv", "all_to_all_v", "All-To-Allv"):
        assert Collective.parse(name) is Collective.ALLTOALLV


def test_the_block_table_is_the_postcondition_of_every_rank() -> None:
    """block_table (what the vectorized proof reads) gives every rank exactly the blocks of
    Descriptor.blocks, empty ones left out, for every collective: counts with empty and uneven
    blocks, every root, alltoallv's count families and a random matrix with zeros."""
    rng = np.random.default_rng(1)
    for collective in Collective:
        for p in (1, 2, 3, 7, 12):
            skews = [None]
            if collective is Collective.ALLTOALLV:
                w = rng.integers(0, 4, size=(p, p)) * (rng.random((p, p)) < 0.6)
                w[0, 0] += 1
                skews += [Skew(0), Skew(2.5), Skew(weights=tuple(tuple(int(x) for x in row)
                                                                 for row in w))]
            for count in (0, 1, 3, p + 2):
                for root in sorted({0, p // 2, p - 1}):
                    for skew in skews:
                        problem = Problem(collective, p, count, root, None, skew)
                        table = block_table(problem)
                        d = descriptor(collective)
                        for r in range(p):
                            blocks = d.blocks(problem, r)
                            mine = table.rank == r
                            assert table.defined[r] == (blocks is not None)
                            want = [(b.out_offset, b.length, b.in_offset, source_mask(b.sources))
                                    for b in blocks or () if b.length]
                            got = list(zip(table.out_offset[mine].tolist(),
                                           table.length[mine].tolist(),
                                           table.in_offset[mine].tolist(),
                                           table.mask[mine].tolist()))
                            assert got == want, (problem, r)
