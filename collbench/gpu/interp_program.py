"""The device program: a lowered schedule compiled for the interpreter kernel (csrc/interp.cu).

A schedule (:mod:`collbench.algorithms`), lowered by :func:`collbench.execute.bind.lower` (the same
IR the MPI, C and NCCL executors run), becomes one flat program per rank: a list of 64-byte
instructions that the interpreter kernel executes in one launch. Everything is decided here, on the
host; the kernel only follows the list.

Execution model (pull, over CUDA IPC peer pointers). Rank ``r`` receiving ``n`` elements from ``q``
in step ``t`` *reads* them from ``q``'s memory (the matching send's source range) and writes its
own destination. Senders never write into a peer. Two flags per ordered pair of ranks, both
release/acquire at system scope, make that safe:

* **ready** (``q`` -> ``r``): "my buffers hold the values of the start of step ``t``"; ``r`` waits
  for it before reading ``q``'s step-``t`` sources;
* **done** (``r`` -> ``q``): "I have finished reading your step-``t`` sources"; ``q`` waits for it
  only before it *writes* memory that overlaps a source ``r`` still may read (lazily: a ring step
  usually never waits for it, and every program waits for every outstanding done at its end).

A step of rank ``r``: signal ready to the peers it sends to; wait ready from the peers it reads;
copy every received range (a range that overlaps one of this step's own send sources goes to a
staging area in scratch first: peers are still reading the old values); run the leading local
reductions with the received operand read straight from the peer (**fused**: read, reduce, store,
with no scratch round trip) when the received range is dead afterwards; signal done; then the
staged copies and the other local operations, in order, each after the done waits its writes need.
The steps' global indices are not needed on the device: the k-th ready/done between a pair is
matched by counting.

Blocks. Every data instruction is spread over the whole grid (the partition of
``collbench_common.cuh``'s ``reduce_range``/``copy_range``); a ``SYNC`` instruction (a grid barrier
of this rank) separates instructions whose ranges conflict (read after write, write after read or
write), and precedes every signal (fenced at system scope). Waits are done by every block.

:func:`check_program` checks these rules statically; :mod:`collbench.gpu.interp_reference`
executes programs in Python, adversarially interleaving the ranks, and must reproduce the numpy
simulator exactly.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..algorithms import Buf, Copy, Problem, Reduce, Schedule, Slice
from ..execute.bind import LoweredProgram, Memory, Region, lower, regions
from .kernel_sources import csrc_dir

INTERP_SOURCE = "interp.cu"


@functools.lru_cache(maxsize=None)
def constants() -> dict[str, int]:
    """``#define COLLBENCH_INTERP_<NAME> <int>`` of csrc/interp.cu, keyed by ``<NAME>``."""
    text = (csrc_dir() / INTERP_SOURCE).read_text()
    found = {m.group(1): int(m.group(2), 0)
             for m in re.finditer(r"^#define\s+COLLBENCH_INTERP_(\w+)\s+(-?(?:0x[0-9a-fA-F]+|\d+))\b", text, re.M)}
    required = ("MAGIC VERSION HEADER_BYTES INSTR_BYTES MEM_IN MEM_OUT MEM_SCRATCH OP_COPY OP_REDUCE OP_DIVIDE "
                "OP_SYNC OP_SIGNAL_READY OP_WAIT_READY OP_SIGNAL_DONE OP_WAIT_DONE SIG_WORD READY_FLAGS DONE_FLAGS "
                "BASES GRID_COUNT GRID_BASE SIG_WORDS KID WAIT_GRID").split()
    missing = [k for k in required if k not in found]
    if missing:
        raise RuntimeError(f"{INTERP_SOURCE}: missing constants {missing}")
    return found


def _c(name: str) -> int:
    return constants()[name]


#: One instruction, laid out as ``struct Instr`` in csrc/interp.cu.
INSTR_DTYPE = np.dtype({
    "names": ["op", "arg", "peer", "dmem", "arank", "amem", "brank", "bmem", "doff", "aoff", "boff", "len"],
    "formats": ["<u4", "<u4", "<i4", "<u4", "<i4", "<u4", "<i4", "<u4", "<u8", "<u8", "<u8", "<u8"],
    "offsets": [0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56],
    "itemsize": 64,
})

OPCODE_NAMES = {"OP_COPY": "copy", "OP_REDUCE": "reduce", "OP_DIVIDE": "divide", "OP_SYNC": "sync",
                "OP_SIGNAL_READY": "signal_ready", "OP_WAIT_READY": "wait_ready",
                "OP_SIGNAL_DONE": "signal_done", "OP_WAIT_DONE": "wait_done"}

_MEMORY_ID = {Memory.SEND: "MEM_IN", Memory.RECV: "MEM_OUT", Memory.SCRATCH: "MEM_SCRATCH"}
#: stage offsets keep the element offset of their source modulo this (16 elements are a
#: multiple of 16 bytes for every dtype, so the 16-byte vector path stays available)
ALIGN_ELEMS = 16


class ProgramError(ValueError):
    """A schedule the interpreter cannot run as written (a compiler limitation or a schedule bug)."""


@dataclass(frozen=True)
class Ref:
    """``offset`` (elements) of memory ``mem`` of ``rank``."""

    rank: int
    mem: int
    offset: int


@dataclass(frozen=True)
class Span:
    """A local range: ``length`` elements from ``offset`` of memory ``mem``."""

    mem: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length

    def overlaps(self, other: "Span") -> bool:
        return (self.mem == other.mem and self.length > 0 and other.length > 0
                and self.offset < other.end and other.offset < self.end)


@dataclass(frozen=True, eq=False)
class DeviceProgram:
    """One rank's program.

    Attributes:
        rank, nranks: whose program, among how many.
        instrs: the instructions (:data:`INSTR_DTYPE`).
        scratch_len: elements of scratch it needs (the schedule's own, then the staging area).
        memory_len: elements each memory (in, out, scratch) must hold.
        totals: ``totals[kind][peer]``: ready signals sent, readies waited for, done signals sent,
            dones waited for, per peer (the device's running epoch bases grow by these).
        steps: schedule steps of this rank (after lowering).
        fused: local reductions whose received operand is read straight from the peer.
        staged: received ranges that went through the staging area.
    """

    rank: int
    nranks: int
    instrs: np.ndarray
    scratch_len: int
    memory_len: tuple[int, int, int]
    totals: np.ndarray
    steps: int = 0
    fused: int = 0
    staged: int = 0

    def count(self, opname: str) -> int:
        """How many instructions have opcode ``OP_<OPNAME>`` (e.g. ``"SYNC"``)."""
        return int(np.count_nonzero(self.instrs["op"] == _c(f"OP_{opname.upper()}")))

    def to_bytes(self, capacity_bytes: int, itemsize: int) -> np.ndarray:
        """Header and instructions as the kernel reads them (uint8), for a communicator whose
        buffers hold ``capacity_bytes`` each (the kernel checks every range against it)."""
        for mem, n in enumerate(self.memory_len):
            if n * itemsize > capacity_bytes:
                raise ProgramError(f"rank {self.rank}: memory {mem} needs {n * itemsize} bytes, "
                                   f"the buffers hold {capacity_bytes}")
        header = np.zeros(_c("HEADER_BYTES") // 4, dtype=np.uint32)
        header[0], header[1], header[2], header[3] = _c("MAGIC"), _c("VERSION"), self.rank, self.nranks
        header[4] = len(self.instrs)
        header[5] = itemsize
        header[6:8] = np.array([capacity_bytes], dtype=np.uint64).view(np.uint32)
        m = 8  # MAX_RANKS words per kind
        for kind in range(4):
            header[16 + kind * m:16 + kind * m + self.nranks] = self.totals[kind]
        return np.concatenate([header.view(np.uint8), self.instrs.view(np.uint8).reshape(-1)])

    def describe(self) -> list[str]:
        """The instructions, one line each (for debugging and the docs)."""
        names = {_c(k): v for k, v in OPCODE_NAMES.items()}
        mems = "in out scratch".split()
        lines = []
        for i, ins in enumerate(self.instrs):
            op = names[int(ins["op"])]
            if op in ("copy", "reduce", "divide"):
                a = f"{int(ins['arank'])}:{mems[int(ins['amem'])]}[{int(ins['aoff'])}]"
                b = f" , {int(ins['brank'])}:{mems[int(ins['bmem'])]}[{int(ins['boff'])}]" if op == "reduce" else ""
                lines.append(f"{i:4d} {op} {mems[int(ins['dmem'])]}[{int(ins['doff'])}:+{int(ins['len'])}] <- {a}{b}")
            elif op == "sync":
                lines.append(f"{i:4d} sync{' fence' if int(ins['arg']) else ''}")
            else:
                lines.append(f"{i:4d} {op} peer {int(ins['peer'])} #{int(ins['arg'])}")
        return lines


# -- compiling ------------------------------------------------------------------------------------


def _memory_of(where: Mapping[Buf, Region]) -> dict[Buf, tuple[int, int]]:
    return {buf: (_c(_MEMORY_ID[reg.memory]), reg.offset) for buf, reg in where.items()}


@dataclass
class _RankView:
    """A rank's lowered program with slices mapped to (memory, element offset)."""

    lowered: LoweredProgram
    where: dict[Buf, tuple[int, int]]
    output: Span

    def span(self, s: Slice) -> Span:
        mem, base = self.where[s.buf]
        return Span(mem, base + s.offset, s.length)


def lower_all(problem: Problem, schedule: Schedule, in_place: bool, op: str | None) -> list[_RankView]:
    views = []
    for program in schedule.programs:
        lowered = lower(problem, program, in_place, op)
        where = regions(problem, program.rank, in_place, lowered.scratch_len)
        mapped = _memory_of(where)
        out_mem, out_off = mapped[Buf.OUTPUT]
        views.append(_RankView(lowered, mapped, Span(out_mem, out_off, problem.output_len(program.rank))))
    return views


def memory_lengths(problem: Problem, rank: int, in_place: bool, scratch_len: int) -> tuple[int, int, int]:
    """Elements of (in, out, scratch) rank ``rank`` touches."""
    lens = [0, 0, scratch_len]
    for reg in regions(problem, rank, in_place).values():
        if reg.memory is not Memory.SCRATCH:
            mem = _c(_MEMORY_ID[reg.memory])
            lens[mem] = max(lens[mem], reg.offset + reg.length)
    return (lens[0], lens[1], lens[2])


def compile_schedule(schedule: Schedule, in_place: bool, op: str | None) -> list[DeviceProgram]:
    """Every rank's device program for ``schedule`` (avg: sum, then one division at the end)."""
    problem = schedule.problem
    views = lower_all(problem, schedule, in_place, op)
    return [_Compiler(problem, views, r, in_place).compile() for r in range(problem.nranks)]


def compile_rank(schedule: Schedule, rank: int, in_place: bool, op: str | None) -> DeviceProgram:
    """Rank ``rank``'s device program (it needs every rank's program: it reads their sources)."""
    problem = schedule.problem
    return _Compiler(problem, lower_all(problem, schedule, in_place, op), rank, in_place).compile()


def _matching_sources(views: Sequence[_RankView], rank: int) -> dict[int, dict[int, list[Span]]]:
    """For each step index and peer: the source spans (on the peer) of what ``rank`` receives, in
    message order."""
    out: dict[int, dict[int, list[Span]]] = {}
    for q, view in enumerate(views):
        for step in view.lowered.steps:
            for peer, src in step.sends:
                if peer == rank:
                    out.setdefault(step.index, {}).setdefault(q, []).append(view.span(src))
    return out


@dataclass
class _Outstanding:
    peer: int
    k: int
    span: Span


@dataclass
class _Compiler:
    problem: Problem
    views: Sequence[_RankView]
    rank: int
    in_place: bool
    instrs: list[tuple] = field(default_factory=list)
    # phase (since the last SYNC): local spans read and written, peers read, unfenced writes
    phase_reads: list[Span] = field(default_factory=list)
    phase_writes: list[Span] = field(default_factory=list)
    phase_remote: set[int] = field(default_factory=set)
    unfenced: bool = False
    outstanding: list[_Outstanding] = field(default_factory=list)
    waited_done: dict[int, int] = field(default_factory=dict)
    counts: np.ndarray = field(default_factory=lambda: np.zeros((4, 1), dtype=np.int64))
    stage_top: int = 0
    stage_max: int = 0
    fused: int = 0
    staged: int = 0
    # a part of the rank's steps (the multi-node composition, gpu/interp_nccl.py): positions
    # [start, stop) of its steps; `nranks` ranks in the program (the views are numbered 0..nranks-1),
    # memory laid out as `memory_rank`'s of the problem; `open_end`: more work (NCCL) follows that
    # the views do not show, so whatever is alive at `stop` stays live; no finalize then
    start: int = 0
    stop: int | None = None
    nranks: int | None = None
    memory_rank: int | None = None
    open_end: bool = False

    READY_OUT, READY_IN, DONE_OUT, DONE_IN = 0, 1, 2, 3

    # -- emitting --------------------------------------------------------------------------------
    def _sync(self, fence: bool) -> None:
        last = self.instrs[-1] if self.instrs else None
        if last is not None and last[0] == _c("OP_SYNC") and not self.phase_reads and not self.phase_writes \
                and not self.phase_remote:
            if fence and not last[1]:
                self.instrs[-1] = (last[0], 1) + last[2:]
        else:
            self.instrs.append((_c("OP_SYNC"), 1 if fence else 0, -1))
        self.phase_reads, self.phase_writes, self.phase_remote = [], [], set()
        if fence:
            self.unfenced = False

    def _data(self, opcode: int, dst: Span, a: Ref, b: Ref | None = None) -> None:
        n = dst.length
        if n == 0:
            return
        reads = [Span(x.mem, x.offset, n) for x in (a, b) if x is not None and x.rank == self.rank]
        for r in reads:
            if r.overlaps(dst) and r != dst:
                raise ProgramError(f"rank {self.rank}: {dst} partially overlaps its operand {r}")
        if (any(dst.overlaps(s) for s in self.phase_reads + self.phase_writes)
                or any(r.overlaps(w) for r in reads for w in self.phase_writes)):
            self._sync(False)
        self.phase_reads += reads
        self.phase_writes.append(dst)
        self.phase_remote |= {x.rank for x in (a, b) if x is not None and x.rank != self.rank}
        self.unfenced = True
        b = b if b is not None else Ref(-1, 0, 0)
        self.instrs.append((opcode, 0, -1, dst.mem, a.rank, a.mem, b.rank, b.mem, dst.offset, a.offset, b.offset, n))

    def _signal(self, kind: str, peer: int, k: int) -> None:
        if self.unfenced or (kind == "DONE" and self.phase_remote):
            self._sync(True)
        self.instrs.append((_c(f"OP_SIGNAL_{kind}"), k, peer))

    def _wait(self, kind: str, peer: int, k: int) -> None:
        self.instrs.append((_c(f"OP_WAIT_{kind}"), k, peer))

    def _wait_before_write(self, span: Span) -> None:
        """Wait for the done of every peer that may still read ``span`` (a source of ours)."""
        need: dict[int, int] = {}
        for o in self.outstanding:
            if o.span.overlaps(span):
                need[o.peer] = max(need.get(o.peer, 0), o.k)
        for peer, k in sorted(need.items()):
            self._wait("DONE", peer, k)
            self.waited_done[peer] = k
        if need:
            self.outstanding = [o for o in self.outstanding if o.k > self.waited_done.get(o.peer, 0)]

    def _needs_wait(self, span: Span) -> bool:
        return any(o.span.overlaps(span) for o in self.outstanding)

    def _stage(self, length: int, like: int) -> Span:
        base = self.views[self.rank].lowered.scratch_len
        off = max(self.stage_top, base)
        off += (like - off) % ALIGN_ELEMS
        self.stage_top = off + length
        self.stage_max = max(self.stage_max, self.stage_top)
        return Span(_c("MEM_SCRATCH"), off, length)

    # -- liveness -----------------------------------------------------------------------------------
    def _dead_after(self, spans: list[Span], t_pos: int, j: int) -> bool:
        """Whether ``spans`` are never read after local op ``j`` of step ``t_pos`` before being
        overwritten (the output range is live at the end)."""
        live = [s for s in spans if s.length]
        view = self.views[self.rank]
        steps = view.lowered.steps

        def read(s: Span) -> bool:
            return any(s.overlaps(x) for x in live)

        def write(s: Span) -> None:
            nonlocal live
            out: list[Span] = []
            for x in live:
                if not s.overlaps(x):
                    out.append(x)
                    continue
                if x.offset < s.offset:
                    out.append(Span(x.mem, x.offset, s.offset - x.offset))
                if s.end < x.end:
                    out.append(Span(x.mem, s.end, x.end - s.end))
            live = out

        def local_ops(items: Sequence[Copy | Reduce]) -> bool:
            for item in items:
                srcs = [item.src] if isinstance(item, Copy) else [item.a, item.b]
                if any(read(view.span(s)) for s in srcs):
                    return False
                write(view.span(item.dst))
                if not live:
                    return True
            return True

        if not local_ops(steps[t_pos].local[j + 1:]):
            return False
        stop = len(steps) if self.stop is None else self.stop
        for step in steps[t_pos + 1:stop]:
            if not live:
                return True
            if any(read(view.span(s)) for _, s in step.sends):
                return False
            for _, s in step.recvs:
                write(view.span(s))
            if not local_ops(step.local):
                return False
        if self.open_end or stop < len(steps):  # what follows is not in view: alive means live
            return not live
        if view.lowered.finalize is not None and read(view.span(view.lowered.finalize)):
            return False
        return not any(view.output.overlaps(x) for x in live)

    # -- the program ---------------------------------------------------------------------------------
    def compile(self) -> DeviceProgram:
        p, me = self.nranks or self.problem.nranks, self.rank
        self.counts = np.zeros((4, p), dtype=np.int64)
        view = self.views[me]
        sources = _matching_sources(self.views, me)
        steps = view.lowered.steps
        stop = len(steps) if self.stop is None else self.stop
        for t_pos in range(self.start, stop):
            self._step(t_pos, steps[t_pos], sources.get(steps[t_pos].index, {}))
        whole = self.start == 0 and stop == len(steps) and not self.open_end
        if view.lowered.finalize is not None and whole:
            span = view.span(view.lowered.finalize)
            self._wait_before_write(span)
            self._data(_c("OP_DIVIDE"), span, Ref(me, span.mem, span.offset))
        # every peer has finished reading our sources before the operation ends
        last: dict[int, int] = {}
        for o in self.outstanding:
            last[o.peer] = max(last.get(o.peer, 0), o.k)
        for peer, k in sorted(last.items()):
            self._wait("DONE", peer, k)
        self.outstanding = []
        instrs = np.zeros(len(self.instrs), dtype=INSTR_DTYPE)
        for i, ins in enumerate(self.instrs):
            if len(ins) == 3:  # control: (op, arg, peer)
                ins = (ins[0], ins[1], ins[2], 0, -1, 0, -1, 0, 0, 0, 0, 0)
            instrs[i] = ins
        scratch = max(view.lowered.scratch_len, self.stage_max)
        mrank = me if self.memory_rank is None else self.memory_rank
        return DeviceProgram(me, p, instrs, scratch, memory_lengths(self.problem, mrank, self.in_place, scratch),
                             self.counts.astype(np.uint32), stop - self.start, self.fused, self.staged)

    def _step(self, t_pos: int, step: Any, sources: dict[int, list[Span]]) -> None:
        me, view = self.rank, self.views[self.rank]
        send_spans = [view.span(s) for _, s in step.sends]
        send_peers = list(dict.fromkeys(q for q, _ in step.sends if q != me))
        recv_peers = list(dict.fromkeys(q for q, _ in step.recvs if q != me))
        # messages from each peer match in order
        queues = {q: list(spans) for q, spans in sources.items()}
        recvs: list[tuple[int, Span, Span]] = []  # (peer, dst, src on the peer)
        for q, dst in step.recvs:
            queue = queues.get(q)
            if not queue:
                raise ProgramError(f"rank {me} step {step.index}: receive from {q} has no matching send")
            src = queue.pop(0)
            if src.length != dst.length:
                raise ProgramError(f"rank {me} step {step.index}: receives {dst.length} elements from {q}, "
                                   f"which sends {src.length}")
            recvs.append((q, view.span(dst), src))
        leftover = [q for q, queue in queues.items() if queue]
        if leftover:
            raise ProgramError(f"step {step.index}: rank {leftover[0]} sends to {me}, which does not receive it")

        # 1. ready to the readers of this step's sources; they stay outstanding until done
        for q in send_peers:
            self.counts[self.READY_OUT, q] += 1
            self._signal("READY", q, int(self.counts[self.READY_OUT, q]))
        for q in send_peers:
            self.counts[self.DONE_IN, q] += 1
        for (q, _), span in zip(step.sends, send_spans):
            if q != me:
                self.outstanding.append(_Outstanding(q, int(self.counts[self.DONE_IN, q]), span))
        # 2. the sources of this step are ready
        for q in recv_peers:
            self.counts[self.READY_IN, q] += 1
            self._wait("READY", q, int(self.counts[self.READY_IN, q]))

        staged_idx = {i for i, (_, dst, _) in enumerate(recvs) if any(dst.overlaps(s) for s in send_spans)}
        fusions = {} if staged_idx else self._fusions(t_pos, step, recvs)
        # 3. receives: read the peer's source into the destination (or the staging area)
        stage_copies: list[tuple[Span, Span]] = []
        self.stage_top = 0
        for i, (q, dst, src) in enumerate(recvs):
            if i in fusions.values():
                continue
            if i in staged_idx:
                stage = self._stage(dst.length, src.offset)
                self._data(_c("OP_COPY"), stage, Ref(q, src.mem, src.offset))
                stage_copies.append((stage, dst))
                self.staged += 1
            else:
                self._wait_before_write(dst)
                self._data(_c("OP_COPY"), dst, Ref(q, src.mem, src.offset))
        # 4. the leading local ops, fused reductions among them, before done is signalled
        local = list(step.local)
        n_lead = max(fusions) + 1 if fusions else 0
        for j in range(n_lead):
            self._local(local[j], recvs, fusions.get(j))
        # 5. we have read every source of this step
        for q in recv_peers:
            self.counts[self.DONE_OUT, q] += 1
            self._signal("DONE", q, int(self.counts[self.DONE_OUT, q]))
        # 6. staged receives land, then the rest of the local ops
        for stage, dst in stage_copies:
            self._wait_before_write(dst)
            self._data(_c("OP_COPY"), dst, Ref(me, stage.mem, stage.offset))
        for j in range(n_lead, len(local)):
            self._local(local[j], recvs, None)

    def _local(self, item: Copy | Reduce, recvs: list[tuple[int, Span, Span]], fused: int | None) -> None:
        me, view = self.rank, self.views[self.rank]
        if isinstance(item, Copy):
            src, dst = view.span(item.src), view.span(item.dst)
            self._wait_before_write(dst)
            if src.overlaps(dst):  # overlapping copy: through the staging area
                stage = self._stage(dst.length, src.offset)
                self._data(_c("OP_COPY"), stage, Ref(me, src.mem, src.offset))
                src = stage
            self._data(_c("OP_COPY"), dst, Ref(me, src.mem, src.offset))
            return
        dst, a, b = view.span(item.dst), view.span(item.a), view.span(item.b)
        ra, rb = Ref(me, a.mem, a.offset), Ref(me, b.mem, b.offset)
        if fused is not None:
            q, recv_dst, src = recvs[fused]
            remote = Ref(q, src.mem, src.offset)
            if a == recv_dst:
                ra = remote
            else:
                rb = remote
            self.fused += 1
        self._wait_before_write(dst)
        partial = [x for x, r in ((a, ra), (b, rb)) if r.rank == me and x.overlaps(dst) and x != dst]
        if partial:  # dst partially overlaps an operand: compute into the staging area
            stage = self._stage(dst.length, dst.offset)
            self._data(_c("OP_REDUCE"), stage, ra, rb)
            self._data(_c("OP_COPY"), dst, Ref(me, stage.mem, stage.offset))
            return
        self._data(_c("OP_REDUCE"), dst, ra, rb)

    def _fusions(self, t_pos: int, step: Any, recvs: list[tuple[int, Span, Span]]) -> dict[int, int]:
        """local op index -> receive index, for reductions that read the received range from the
        peer directly. Only a prefix of local ops that need no done wait qualifies (their done
        signals come after them), the received range must be written by that receive alone,
        untouched by earlier local ops, and dead after the reduction."""
        view = self.views[self.rank]
        fusions: dict[int, int] = {}
        touched: list[Span] = []
        used: set[int] = set()
        for j, item in enumerate(step.local):
            dst = view.span(item.dst)
            if self._needs_wait(dst):
                break
            if isinstance(item, Reduce):
                a, b = view.span(item.a), view.span(item.b)
                for operand, other in ((b, a), (a, b)):
                    i = next((i for i, (q, d, _) in enumerate(recvs) if d == operand and q != self.rank
                              and i not in used), None)
                    if i is None or other.overlaps(operand) or any(operand.overlaps(x) for x in touched):
                        continue
                    if any(operand.overlaps(d) for k, (_, d, _) in enumerate(recvs) if k != i):
                        continue
                    if dst.overlaps(operand) and dst != operand:
                        continue
                    rest = [] if dst == operand else [operand]
                    if not self._dead_after(rest, t_pos, j):
                        continue
                    fusions[j] = i
                    used.add(i)
                    break
                touched += [a, b, dst]
            else:
                touched += [view.span(item.src), dst]
        return fusions


# -- static checks --------------------------------------------------------------------------------


def check_program(prog: DeviceProgram) -> None:
    """The block-level rules of a program (raises :class:`ProgramError`):

    * inside a phase (between SYNCs) no two data instructions conflict on this rank's memory
      (the blocks run them concurrently);
    * every signal comes after a SYNC that follows every data instruction before it, fenced at
      system scope;
    * every range lies inside its memory (the lengths the program declares).
    """
    reads: list[Span] = []
    writes: list[Span] = []
    dirty = False
    data = (_c("OP_COPY"), _c("OP_REDUCE"), _c("OP_DIVIDE"))
    for i, ins in enumerate(prog.instrs):
        op = int(ins["op"])
        if op == _c("OP_SYNC"):
            reads, writes = [], []
            if int(ins["arg"]):
                dirty = False
        elif op in (_c("OP_SIGNAL_READY"), _c("OP_SIGNAL_DONE")):
            if dirty:
                raise ProgramError(f"rank {prog.rank} instruction {i}: signal without a fenced SYNC after data")
        elif op in data:
            n = int(ins["len"])
            dst = Span(int(ins["dmem"]), int(ins["doff"]), n)
            operands = [("a", int(ins["arank"]), int(ins["amem"]), int(ins["aoff"]))]
            if op == _c("OP_REDUCE"):
                operands.append(("b", int(ins["brank"]), int(ins["bmem"]), int(ins["boff"])))
            mine = [Span(m, o, n) for _, r, m, o in operands if r == prog.rank]
            for s in [dst] + mine:
                if s.end > prog.memory_len[s.mem]:
                    raise ProgramError(f"rank {prog.rank} instruction {i}: {s} outside memory of "
                                       f"{prog.memory_len[s.mem]}")
            if any(dst.overlaps(s) for s in reads + writes) or any(r.overlaps(w) for r in mine for w in writes):
                raise ProgramError(f"rank {prog.rank} instruction {i}: conflicts with an instruction of the "
                                   "same phase (a SYNC is missing)")
            reads += mine
            writes.append(dst)
            dirty = True
