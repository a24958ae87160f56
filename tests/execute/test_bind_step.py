"""The single bind step (collbench.execute.bind.bind): lowering plus where each buffer lives,
for every collective and placement, with numpy views and with any other array type."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from collbench.algorithms import Buf, Collective, Layout, Problem, Slice
from collbench.algorithms.registry import algorithms_for, get_algorithm
from collbench.algorithms.schedule import resolve_slice
from collbench.backends.mpi import aligned_bytes, typed
from collbench.dtypes import DTYPES
from collbench.execute.bind import Memory, Region, bind, lower, regions, views_of

CASES = [(c, a.name) for c in Collective for a in algorithms_for(c, include_native=False)]


def _problem(collective: Collective, name: str, nranks: int = 4, count: int = 5) -> Problem:
    layout = Layout.blocked(nranks, 2) if name == "hierarchical" else None
    return Problem(collective, nranks, count, root=nranks - 1 if collective.rooted else 0, layout=layout)


@pytest.mark.parametrize("collective", list(Collective), ids=[c.value for c in Collective])
def test_out_of_place_input_is_the_send_buffer_and_output_the_receive_buffer(collective):
    problem = Problem(collective, 4, 5, root=3 if collective.rooted else 0)
    for rank in range(4):
        where = regions(problem, rank, False, scratch_len=7)
        assert where == {Buf.INPUT: Region(Memory.SEND, 0, problem.input_len(rank)),
                         Buf.OUTPUT: Region(Memory.RECV, 0, problem.output_len(rank)),
                         Buf.SCRATCH: Region(Memory.SCRATCH, 0, 7)}


@pytest.mark.parametrize("collective", list(Collective), ids=[c.value for c in Collective])
def test_in_place_binding_agrees_with_lowering(collective):
    """In place, both buffers live in the receive buffer exactly where lowering says the aliased
    one is: a range of either buffer and its resolved range are the same memory."""
    problem = Problem(collective, 4, 5, root=3 if collective.rooted else 0)
    for rank in range(4):
        where = regions(problem, rank, True)
        assert where[Buf.INPUT].memory is where[Buf.OUTPUT].memory is Memory.RECV
        for buf in (Buf.INPUT, Buf.OUTPUT):
            n = where[buf].length
            resolved = resolve_slice(problem, rank, Slice(buf, 0, n), True)
            assert where[resolved.buf].offset + resolved.offset == where[buf].offset
    # the nccl-tests layout: allgather's input is the rank's block of the output, reduce_scatter's
    # output the rank's block of the input
    if collective is Collective.ALLGATHER:
        assert regions(problem, 2, True)[Buf.INPUT] == Region(Memory.RECV, 10, 5)
    if collective is Collective.REDUCE_SCATTER:
        assert regions(problem, 2, True)[Buf.OUTPUT] == Region(Memory.RECV, 10, 5)


@pytest.mark.parametrize("collective, name", CASES, ids=[f"{c.value}-{n}" for c, n in CASES])
@pytest.mark.parametrize("in_place", [False, True])
def test_bind_lowers_and_asks_the_backend_for_each_view(collective, name, in_place):
    """The bound program is the lowered one; the backend's view function is the only thing that
    touches memory, so any array type works (here: views recorded as tuples)."""
    problem = _problem(collective, name)
    algorithm = get_algorithm(name)
    op = "sum" if collective.reduces else None
    if algorithm.precondition(problem, op=op) is not None:
        pytest.skip("precondition")
    for rank in range(problem.nranks):
        program = algorithm.program(problem, rank)
        bound = bind(problem, program, in_place, op, lambda memory, count, offset: (memory, count, offset))
        assert bound.lowered == lower(problem, program, in_place, op)
        where = regions(problem, rank, in_place, bound.lowered.scratch_len)
        assert bound.regions == where
        assert bound.scratch_len == program.scratch_len
        for buf in (Buf.INPUT, Buf.OUTPUT):
            assert bound.buffers[buf] == (where[buf].memory, where[buf].length, where[buf].offset)
        assert bound.input is bound.buffers[Buf.INPUT] and bound.output is bound.buffers[Buf.OUTPUT]
        # every range of the lowered program fits the view it indexes (scratch: its length)
        sizes = {Buf.INPUT: where[Buf.INPUT].length, Buf.OUTPUT: where[Buf.OUTPUT].length,
                 Buf.SCRATCH: bound.scratch_len}
        for step in bound.lowered.steps:
            ranges = [s for _, s in step.sends + step.recvs]
            ranges += [s for item in step.local for s in vars(item).values() if isinstance(s, Slice)]
            assert all(s.offset + s.length <= sizes[s.buf] for s in ranges)


def _pointer(view: np.ndarray) -> int:
    return view.__array_interface__["data"][0]


@pytest.mark.parametrize("collective", list(Collective), ids=[c.value for c in Collective])
@pytest.mark.parametrize("in_place", [False, True])
def test_numpy_views_alias_the_backend_buffers(collective, in_place):
    """What the MPI backend gets: typed views at the right byte offsets of its two buffers."""
    problem = Problem(collective, 4, 5, root=3 if collective.rooted else 0)
    dtype = DTYPES["float64"]
    send, recv = aligned_bytes(1024), aligned_bytes(1024)
    program = get_algorithm("direct" if collective in (Collective.ALLTOALL, Collective.ALLTOALLV) else "ring")
    for rank in range(4):
        if program.precondition(problem, op="sum") is not None:
            pytest.skip("no ring here")
        bound = bind(problem, program.program(problem, rank), in_place,
                     "sum" if collective.reduces else None, views_of(send, recv, dtype, typed))
        raw = {Memory.SEND: send, Memory.RECV: recv}
        for buf, view in bound.buffers.items():
            region = bound.regions[buf]
            assert view.dtype == np.float64 and view.size == region.length
            assert _pointer(view) == _pointer(raw[region.memory]) + region.offset * 8
        if in_place:
            assert np.shares_memory(bound.input, bound.output) or 0 in (bound.input.size, bound.output.size)
        else:
            assert not np.shares_memory(bound.input, bound.output)


def test_the_nccl_backends_typed_views_work_too():
    """The NCCL backend's CudaBuffers.typed (bfloat16 as uint16 on the device) plugs in as is;
    numpy stands in for CuPy, which only needs slicing and .view like numpy."""
    from collbench.backends.nccl import CudaBuffers

    buffers = CudaBuffers(SimpleNamespace(empty=np.empty, uint8=np.uint8))
    buffers.send, buffers.recv = np.zeros(256, np.uint8), np.zeros(256, np.uint8)
    problem = Problem(Collective.ALLGATHER, 4, 3)
    program = get_algorithm("ring").program(problem, 1)
    bound = bind(problem, program, True, None, views_of(buffers.send, buffers.recv, DTYPES["bfloat16"],
                                                        buffers.typed))
    assert bound.input.dtype == np.uint16 and bound.output.dtype == np.uint16
    assert (bound.input.size, bound.output.size) == (3, 12)
    assert _pointer(bound.input) == _pointer(buffers.recv) + 3 * 2
