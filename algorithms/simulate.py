"""A single-process numpy simulator of schedules: the test oracle for the real executors.

:func:`simulate` runs every rank's program on numpy buffers with exactly the semantics of the IR
(:mod:`.schedule`): steps in increasing global index; within a step every send reads its source
as it is at the start of the step, then the receives land, then each rank applies its local
operations in order; ``avg`` is finished by one division of the final outputs. In-place runs
alias the buffers as :func:`~.schedule.inplace_input_offset` says. Output and scratch start
filled with a poison value (NaN for floating types, the largest value for integers), and
out-of-place inputs are read-only, so a schedule that reads data nobody wrote or writes its input
shows up as a wrong answer or an error.

:func:`reference_result` computes what a collective must produce directly with numpy.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .collectives import Block, descriptor
from .reduction import finalize_avg, reduce_into, ufunc
from .schedule import Buf, Collective, Copy, Problem, Reduce, Schedule, inplace_input_offset
from .vcounts import Skew, count_of_lengths


def _poison(n: int, dtype: np.dtype) -> np.ndarray:
    arr = np.empty(n, dtype=dtype)
    if dtype.kind in "iu":
        arr.fill(np.iinfo(dtype).max)
    else:
        arr.fill(np.nan)
    return arr


def _buffers(problem: Problem, rank: int, data: np.ndarray, scratch_len: int,
             in_place: bool) -> dict[Buf, np.ndarray]:
    in_len, out_len = problem.input_len(rank), problem.output_len(rank)
    if data.shape != (in_len,):
        raise ValueError(f"rank {rank}: input has shape {data.shape}, the problem needs "
                         f"({in_len},)")
    scratch = _poison(scratch_len, data.dtype)
    if not in_place:
        inp = data.copy()
        inp.flags.writeable = False
        return {Buf.INPUT: inp, Buf.OUTPUT: _poison(out_len, data.dtype), Buf.SCRATCH: scratch}
    host, offset = inplace_input_offset(problem, rank)
    if host is Buf.OUTPUT:
        out = _poison(out_len, data.dtype)
        out[offset:offset + in_len] = data
        return {Buf.INPUT: out[offset:offset + in_len], Buf.OUTPUT: out, Buf.SCRATCH: scratch}
    inp = data.copy()
    return {Buf.INPUT: inp, Buf.OUTPUT: inp[offset:offset + out_len], Buf.SCRATCH: scratch}


def _view(bufs: dict[Buf, np.ndarray], rank: int, t: int, slc) -> np.ndarray:
    arr = bufs[slc.buf]
    if slc.offset < 0 or slc.length < 0 or slc.offset + slc.length > arr.shape[0]:
        raise ValueError(f"rank {rank} step {t}: {slc} is outside the {arr.shape[0]}-element "
                         f"{slc.buf.value} buffer")
    return arr[slc.offset:slc.offset + slc.length]


def simulate(schedule: Schedule, inputs: Sequence[np.ndarray], op: str,
             in_place: bool = False) -> list[np.ndarray]:
    """Execute a schedule on numpy arrays, one process standing in for every rank.

    Args:
        schedule: The programs of every rank.
        inputs: One 1-D array per rank, of the problem's input length; all the same dtype.
        op: Reduction operator name (see :mod:`.reduction`); ignored when nothing reduces.
        in_place: Alias input and output as an in-place run does.

    Returns:
        Each rank's output buffer (a copy). For ``reduce`` only the root's output is meaningful.

    Raises:
        ValueError: Wrong input shapes, a slice outside its buffer, or messages that do not
            match (the simulator executes; :func:`~.verify.verify` explains).
    """
    problem = schedule.problem
    p = problem.nranks
    if len(inputs) != p:
        raise ValueError(f"{len(inputs)} inputs for {p} ranks")
    dtypes = {np.asarray(x).dtype for x in inputs}
    if len(dtypes) != 1:
        raise ValueError(f"inputs have different dtypes: {sorted(map(str, dtypes))}")
    if problem.collective.reduces:
        ufunc(op)  # unknown operator: fail before running anything
    bufs = [_buffers(problem, r, np.asarray(inputs[r]), prog.scratch_len, in_place)
            for r, prog in enumerate(schedule.programs)]
    by_step: dict[int, list] = {}
    for r, prog in enumerate(schedule.programs):
        last = -1
        for step in prog.steps:
            if step.index <= last:
                raise ValueError(f"rank {r}: step indices must be strictly increasing")
            last = step.index
            by_step.setdefault(step.index, []).append((r, step))
    for t in sorted(by_step):
        entries = by_step[t]
        in_flight: dict[tuple[int, int], list[np.ndarray]] = {}
        for r, step in entries:
            for send in step.sends:
                # a copy: the payload is the source as it was at the start of the step
                in_flight.setdefault((r, send.peer), []).append(
                    _view(bufs[r], r, t, send.src).copy())
        for r, step in entries:
            for recv in step.recvs:
                queue = in_flight.get((recv.peer, r))
                if not queue:
                    raise ValueError(f"rank {r} step {t}: receive from {recv.peer} has no "
                                     f"matching send")
                payload = queue.pop(0)
                dst = _view(bufs[r], r, t, recv.dst)
                if payload.shape != dst.shape:
                    raise ValueError(f"rank {r} step {t}: receive of {dst.shape[0]} elements "
                                     f"from {recv.peer}, which sent {payload.shape[0]}")
                dst[...] = payload
            for local in step.local:
                if isinstance(local, Copy):
                    np.copyto(_view(bufs[r], r, t, local.dst), _view(bufs[r], r, t, local.src))
                elif isinstance(local, Reduce):
                    reduce_into(op, _view(bufs[r], r, t, local.dst),
                                _view(bufs[r], r, t, local.a), _view(bufs[r], r, t, local.b))
                else:
                    raise ValueError(f"rank {r} step {t}: unknown local operation {local!r}")
        leftover = [key for key, queue in in_flight.items() if queue]
        if leftover:
            src, dst = leftover[0]
            raise ValueError(f"step {t}: rank {src} sends to {dst}, which does not receive it")
    outputs = [b[Buf.OUTPUT].copy() for b in bufs]
    desc = descriptor(problem.collective)
    if op == "avg" and desc.reduces:
        for r, out in enumerate(outputs):
            if desc.has_result(problem, r):
                finalize_avg(out, p)
    return outputs


def reference_result(collective: Collective | str, inputs: Sequence[np.ndarray], op: str,
                     root: int = 0, skew: Skew | None = None) -> list[np.ndarray | None]:
    """What each rank's output must be, computed directly with numpy from the collective's
    postcondition blocks (:mod:`.collectives`).

    Contributions are combined in rank order with :func:`~.reduction.reduce_into` (so 16-bit and
    integer arithmetic match the executors'), then ``avg`` divides once.

    Args:
        collective: The collective (enum or name).
        inputs: One 1-D input array per rank (for reduce_scatter and alltoall ``count * nranks``
            long).
        op: Reduction operator name (ignored for collectives that do not reduce).
        root: Root rank of broadcast and reduce.
        skew: alltoallv's count matrix family (None: the default); its count is the one that
            gives the inputs' lengths.

    Returns:
        One array per rank; ``None`` where the collective leaves the output unspecified (the
        non-root ranks of ``reduce``).
    """
    coll = collective if isinstance(collective, Collective) else Collective.parse(collective)
    desc = descriptor(coll)
    arrays = [np.asarray(x) for x in inputs]
    p = len(arrays)
    if desc.vector:
        count = count_of_lengths([a.shape[0] for a in arrays], skew)
        problem = Problem(coll, p, count, root, skew=skew)
    else:
        problem = Problem(coll, p, desc.count_of_input(arrays[0].shape[0], p), root)
    done: dict[tuple, np.ndarray] = {}  # blocks shared by several ranks are computed once

    def block_result(block: Block) -> np.ndarray:
        key = (block.in_offset, block.length, tuple(block.sources))
        if key not in done:
            lo, hi = block.in_offset, block.in_offset + block.length
            first, *rest = block.sources
            acc = arrays[first][lo:hi].copy()
            for q in rest:
                reduce_into(op, acc, acc, arrays[q][lo:hi])
            if desc.reduces and op == "avg":
                finalize_avg(acc, p)
            done[key] = acc
        return done[key]

    results: list[np.ndarray | None] = []
    for r in range(p):
        blocks = desc.blocks(problem, r)
        if blocks is None:
            results.append(None)
            continue
        parts = [block_result(b) for b in blocks]
        results.append(np.concatenate(parts) if parts else arrays[0][:0].copy())
    return results
