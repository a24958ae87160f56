"""A pure-Python reference interpreter of device programs (:mod:`collbench.gpu.interp_program`).

:class:`RankMachine` executes one rank's program instruction by instruction on numpy memory, with
the kernel's flag protocol on signal words laid out exactly as on the device (each rank's signal
buffer as a ``uint32`` array; ready/done flags written into the peer's words, running epoch bases
persisted in the owner's words between launches). Data instructions are atomic here; the kernel
spreads them over blocks, which :func:`~collbench.gpu.interp_program.check_program` covers.

:func:`run_programs` drives every rank's machine in one process under an interleaving *policy*
(``forward``: each rank as far as it goes, rank 0 first; ``backward``: the last rank first;
``roundrobin``: one instruction each in turn; ``random``: random ranks, random bursts). A missing
ready lets a reader run ahead of its writer, a missing done lets a writer overwrite what a reader
still needs: some policy then produces a wrong result, which the tests compare with the numpy
simulator. A program that waits for a signal nobody sends ends in :class:`InterpDeadlock`.

The CPU fake of CuPy uses the same machine as its interpreter "kernel" (ranks as threads or
processes, waiting on the shared signal words), so the backend's Python runs end to end without
a GPU.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np

from ..algorithms import Problem, Schedule
from ..algorithms.reduction import finalize_avg, reduce_into
from ..execute.bind import Memory, regions
from .interp_program import DeviceProgram, check_program, compile_schedule, constants
from .kernel_sources import header_constants

POLICIES = ("forward", "backward", "roundrobin", "random")


class InterpDeadlock(RuntimeError):
    """No rank can make progress and some have not finished."""


class InterpRace(RuntimeError):
    """A rank read a peer's memory not known to be written, or wrote memory a peer may still read."""


class RaceDetector:
    """Happens-before checking with vector clocks, so a missing wait fails even when the data
    happen to come out right under every interleaving tried.

    Each rank has a vector clock; a signal publishes the signaller's clock and then advances its
    own component; a satisfied wait joins the clock published with the value it saw. Every
    element of every memory remembers the owner's epoch of its last write and, per peer, the
    reader's epoch of its last read. A remote read must see the last write in its past; a write
    must see every peer's last read in its past. Data the host wrote before the launch counts as
    written at the owner's first epoch, so reading it also needs a ready.
    """

    def __init__(self, nranks: int, memory: Callable[[int, int], np.ndarray]) -> None:
        self.p, self.memory = nranks, memory
        self.clock = np.zeros((nranks, nranks), dtype=np.int64)
        np.fill_diagonal(self.clock, 1)
        self.published: dict[tuple[int, int, int], dict[int, np.ndarray]] = {}
        self.writes: dict[tuple[int, int], np.ndarray] = {}
        self.reads: dict[tuple[int, int], np.ndarray] = {}

    def _shadow(self, rank: int, mem: int) -> tuple[np.ndarray, np.ndarray]:
        key = (rank, mem)
        if key not in self.writes:
            n = self.memory(rank, mem).shape[0]
            self.writes[key] = np.ones(n, dtype=np.int64)  # the host's data: the owner's first epoch
            self.reads[key] = np.zeros((self.p, n), dtype=np.int64)
        return self.writes[key], self.reads[key]

    def signal(self, me: int, dest: int, word: int, value: int) -> None:
        self.published.setdefault((dest, word, me), {})[value] = self.clock[me].copy()
        self.clock[me, me] += 1

    def acquire(self, me: int, src: int, word: int, seen: int) -> None:
        published = self.published.get((me, word, src), {}).get(seen)
        if published is not None:
            np.maximum(self.clock[me], published, out=self.clock[me])

    def read(self, me: int, owner: int, mem: int, offset: int, n: int, where: str) -> None:
        if owner == me or n == 0:
            return
        writes, reads = self._shadow(owner, mem)
        late = writes[offset:offset + n] > self.clock[me, owner]
        if late.any():
            raise InterpRace(f"{where}: rank {me} reads rank {owner}'s memory {mem}[{offset + int(np.argmax(late))}] "
                             "without a ready that covers its last write")
        reads[me, offset:offset + n] = self.clock[me, me]

    def write(self, me: int, mem: int, offset: int, n: int, where: str) -> None:
        if n == 0:
            return
        writes, reads = self._shadow(me, mem)
        for x in range(self.p):
            if x != me:
                pending = reads[x, offset:offset + n] > self.clock[me, x]
                if pending.any():
                    raise InterpRace(f"{where}: rank {me} overwrites its memory {mem}[{offset + int(np.argmax(pending))}] "
                                     f"that rank {x} may still be reading (a done wait is missing)")
        writes[offset:offset + n] = self.clock[me, me]

    def finish(self, me: int) -> None:
        """When a rank's launch ends, no peer may still be reading its memory: the host or the
        next launch may write any of it, which is what ending counts as from here on."""
        for mem in range(3):
            writes, reads = self._shadow(me, mem)
            for x in range(self.p):
                if x != me and (reads[x] > self.clock[me, x]).any():
                    raise InterpRace(f"rank {me} ends its launch while rank {x} may still read its memory {mem} "
                                     "(a final done wait is missing)")
        self.clock[me, me] += 1
        for mem in range(3):
            self._shadow(me, mem)[0][:] = self.clock[me, me]


def signal_words() -> int:
    """uint32 words of one rank's signal buffer."""
    return header_constants()["SIG_BYTES"] // 4


def _i32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


class RankMachine:
    """One rank's program on numpy memory.

    Args:
        prog: the rank's device program.
        memory: ``memory(rank, mem)``: the typed array of memory ``mem`` (in, out, scratch) of
            ``rank`` (peers' memories are read through it: the IPC pointers).
        sigs: every rank's signal buffer as a uint32 array (flags are written into the peer's).
        op: the run's reduction op (avg reduces as sum; DIVIDE finishes it).
    """

    def __init__(self, prog: DeviceProgram, memory: Callable[[int, int], np.ndarray],
                 sigs: Sequence[np.ndarray], op: str | None, detector: RaceDetector | None = None) -> None:
        c = constants()
        self.prog, self.memory, self.sigs, self.op = prog, memory, sigs, op or "sum"
        self.detector = detector
        self.rank, self.nranks = prog.rank, prog.nranks
        self.pc = 0
        self.started = False
        self.finished = False
        self._c = c
        self._area = c["SIG_WORD"]
        self.bases = np.zeros((4, self.nranks), dtype=np.uint32)
        self.ops = {c[k]: k[3:].lower() for k in c if k.startswith("OP_")}
        self.waiting: tuple[str, int, int, int] | None = None  # (kind, peer, expected, seen)

    # -- flags -------------------------------------------------------------------------------
    def _base_word(self, kind: int, peer: int) -> int:
        return self._area + self._c["BASES"] + kind * 8 + peer

    def _start(self) -> None:
        own = self.sigs[self.rank]
        for kind in range(4):
            for q in range(self.nranks):
                self.bases[kind, q] = own[self._base_word(kind, q)]
        self.started = True

    def _finish(self) -> None:
        own = self.sigs[self.rank]
        for kind in range(4):
            for q in range(self.nranks):
                own[self._base_word(kind, q)] = (int(self.bases[kind, q]) + int(self.prog.totals[kind, q])) & 0xFFFFFFFF
        if self.detector is not None:
            self.detector.finish(self.rank)
        self.finished = True

    def flag_value(self, kind: str, peer: int) -> int:
        """The latest ready/done value ``peer`` wrote into this rank's signal buffer."""
        word = self._c["READY_FLAGS"] if kind == "ready" else self._c["DONE_FLAGS"]
        return int(self.sigs[self.rank][self._area + word + peer])

    # -- execution -----------------------------------------------------------------------------
    def view(self, rank: int, mem: int, offset: int, n: int) -> np.ndarray:
        arr = self.memory(rank, mem)
        if offset < 0 or offset + n > arr.shape[0]:
            raise IndexError(f"rank {self.rank}: {n} elements at {offset} of rank {rank}'s memory {mem} "
                             f"({arr.shape[0]} elements)")
        return arr[offset:offset + n]

    def step(self) -> str:
        """Execute the next instruction if it can: ``ran``, ``blocked`` or ``done``."""
        if self.finished:
            return "done"
        if not self.started:
            self._start()
        if self.pc == len(self.prog.instrs):
            self._finish()
            return "done"
        ins = self.prog.instrs[self.pc]
        name = self.ops[int(ins["op"])]
        peer, k = int(ins["peer"]), int(ins["arg"])
        if name in ("signal_ready", "signal_done"):
            kind = 0 if name == "signal_ready" else 2
            word = self._c["READY_FLAGS"] if name == "signal_ready" else self._c["DONE_FLAGS"]
            value = (int(self.bases[kind, peer]) + k) & 0xFFFFFFFF
            if self.detector is not None:
                self.detector.signal(self.rank, peer, word, value)
            self.sigs[peer][self._area + word + self.rank] = value
        elif name in ("wait_ready", "wait_done"):
            kind = 1 if name == "wait_ready" else 3
            expected = (int(self.bases[kind, peer]) + k) & 0xFFFFFFFF
            seen = self.flag_value(name[5:], peer)
            if _i32(seen - expected) < 0:
                self.waiting = (name[5:], peer, expected, seen)
                return "blocked"
            self.waiting = None
            if self.detector is not None:
                word = self._c["READY_FLAGS"] if kind == 1 else self._c["DONE_FLAGS"]
                self.detector.acquire(self.rank, peer, word, seen)
        elif name == "sync":
            pass  # blocks are not modelled; check_program covers what SYNC orders
        else:
            n = int(ins["len"])
            dst = self.view(self.rank, int(ins["dmem"]), int(ins["doff"]), n)
            a = self.view(int(ins["arank"]), int(ins["amem"]), int(ins["aoff"]), n)
            if self.detector is not None:
                where = f"rank {self.rank} instruction {self.pc}"
                operands = [("a", "arank", "amem", "aoff")] + ([("b", "brank", "bmem", "boff")] if name == "reduce" else [])
                for _, rk, mk, ok in operands:
                    self.detector.read(self.rank, int(ins[rk]), int(ins[mk]), int(ins[ok]), n, where)
                self.detector.write(self.rank, int(ins["dmem"]), int(ins["doff"]), n, where)
            if name == "copy":
                np.copyto(dst, a)
            elif name == "reduce":
                b = self.view(int(ins["brank"]), int(ins["bmem"]), int(ins["boff"]), n)
                reduce_into(self.op, dst, a, b)
            elif name == "divide":
                if a is not dst and not np.shares_memory(a, dst):
                    np.copyto(dst, a)
                finalize_avg(dst, self.nranks)
            else:
                raise ValueError(f"rank {self.rank}: unknown instruction {name}")
        self.pc += 1
        return "ran"


def run_programs(programs: Sequence[DeviceProgram], memory: Callable[[int, int], np.ndarray], op: str | None,
                 *, policy: str = "forward", seed: int = 0, launches: int = 1,
                 sigs: Sequence[np.ndarray] | None = None, races: bool = True) -> list[np.ndarray]:
    """Run every rank's program ``launches`` times (back to back, as a chain or a graph replay
    would), interleaving the ranks by ``policy``, checking happens-before (``races``; raises
    :class:`InterpRace`). Returns the signal buffers."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    for prog in programs:
        check_program(prog)
    p = len(programs)
    sigs = list(sigs) if sigs is not None else [np.zeros(signal_words(), dtype=np.uint32) for _ in range(p)]
    left = [launches] * p
    detector = RaceDetector(p, memory) if races else None
    machines = [RankMachine(programs[r], memory, sigs, op, detector) for r in range(p)]
    rng = random.Random(seed)

    def advance(r: int, budget: int) -> bool:
        """Run rank r for up to ``budget`` instructions; whether anything happened."""
        progressed = False
        for _ in range(budget):
            if left[r] == 0:
                return progressed
            state = machines[r].step()
            if state == "blocked":
                return progressed
            progressed = True
            if state == "done":
                left[r] -= 1
                if left[r]:
                    machines[r] = RankMachine(programs[r], memory, sigs, op, detector)
        return progressed

    while any(left):
        if policy == "random":
            order = [r for r in range(p) if left[r]]
            rng.shuffle(order)
            progressed = False
            for r in order:
                progressed |= advance(r, rng.randint(1, 6))
        else:
            order = list(range(p)) if policy != "backward" else list(range(p - 1, -1, -1))
            budget = 1 if policy == "roundrobin" else 1 << 60
            progressed = False
            for r in order:
                progressed |= advance(r, budget)
        if not progressed and any(left):
            stuck = [f"rank {r} at {m.pc} waits for {m.waiting}" for r, m in enumerate(machines) if left[r]]
            raise InterpDeadlock("; ".join(stuck))
    return sigs


def _poison(n: int, dtype: np.dtype) -> np.ndarray:
    arr = np.empty(n, dtype=dtype)
    arr.fill(np.iinfo(dtype).max if dtype.kind in "iu" else np.nan)
    return arr


def interpret(schedule: Schedule, inputs: Sequence[np.ndarray], op: str, in_place: bool = False, *,
              policy: str = "forward", seed: int = 0, launches: int = 1,
              programs: Sequence[DeviceProgram] | None = None, races: bool = True) -> list[np.ndarray]:
    """:func:`collbench.algorithms.simulate.simulate`, but through the device programs: compile
    the schedule, lay the buffers out as the cuda backend does (in, out and scratch memories;
    output and scratch poisoned; an out-of-place input read-only) and run the programs.

    Returns each rank's output range (a copy). With ``launches`` > 1 the programs run back to
    back on the same memory, as a chain of operations does.
    """
    problem: Problem = schedule.problem
    p = problem.nranks
    progs = list(programs) if programs is not None else compile_schedule(schedule, in_place, op)
    dtype = np.asarray(inputs[0]).dtype
    mems: list[list[np.ndarray]] = []
    outputs = []
    for r in range(p):
        where = regions(problem, r, in_place, progs[r].scratch_len)
        in_mem = np.asarray(inputs[r]).copy() if not in_place else np.empty(0, dtype)
        out_mem = _poison(progs[r].memory_len[1], dtype)
        scratch = _poison(progs[r].memory_len[2], dtype)
        if in_place:
            reg = where[next(b for b in where if b.value == "in")]
            out_mem[reg.offset:reg.offset + reg.length] = inputs[r]
        else:
            in_mem.flags.writeable = False
        mems.append([in_mem, out_mem, scratch])
        out_reg = where[next(b for b in where if b.value == "out")]
        memory = in_mem if out_reg.memory is Memory.SEND else out_mem
        outputs.append((memory, out_reg.offset, out_reg.length))

    run_programs(progs, lambda rank, mem: mems[rank][mem], op, policy=policy, seed=seed, launches=launches,
                 races=races)
    return [m[o:o + n].copy() for m, o, n in outputs]


def interpret_composed(schedule: Schedule, groups: Sequence[Sequence[int]], inputs: Sequence[np.ndarray], op: str,
                       in_place: bool = False, *, policy: str = "forward", seed: int = 0,
                       races: bool = True) -> list[np.ndarray]:
    """:func:`interpret` for the multi-node composition (:mod:`collbench.gpu.interp_nccl`): each
    group's interpreter launches run on :class:`RankMachine` (group-local ranks, one signal
    buffer set and one race detector per group, kept across launches), the NCCL parts as
    messages matched in order per pair (a receive completes when its send was posted), their
    local operations and the final avg division with the simulator's arithmetic. The ranks are
    interleaved by ``policy``. Returns each rank's output range (a copy)."""
    from ..algorithms import Buf, Copy, Slice
    from ..algorithms.reduction import finalize_avg as divide
    from .interp_nccl import compile_parts, memory_need, plan_all

    problem: Problem = schedule.problem
    p = problem.nranks
    plans = plan_all(schedule, groups, in_place, op)
    programs = [compile_parts(problem, plans, r, in_place) for r in range(p)]
    dtype = np.asarray(inputs[0]).dtype
    mems: list[list[np.ndarray]] = []
    outputs = []
    wheres = []
    for r in range(p):
        n = memory_need(problem, plans[r], programs[r], in_place)
        where = regions(problem, r, in_place, plans[r].filtered.scratch_len)
        wheres.append(where)
        mem = [_poison(n, dtype), _poison(n, dtype), _poison(n, dtype)]
        reg = where[Buf.INPUT]
        mem[0 if reg.memory is Memory.SEND else 1][reg.offset:reg.offset + reg.length] = inputs[r]
        mems.append(mem)
        out = where[Buf.OUTPUT]
        outputs.append((mem[0 if out.memory is Memory.SEND else 1], out.offset, out.length))
    index = {Memory.SEND: 0, Memory.RECV: 1, Memory.SCRATCH: 2}

    def arr(r: int, s: Slice) -> np.ndarray:
        reg = wheres[r][s.buf]
        return mems[r][index[reg.memory]][reg.offset + s.offset:reg.offset + s.offset + s.length]

    group_of = {r: tuple(g) for g in groups for r in g}
    sigs = {g: [np.zeros(signal_words(), dtype=np.uint32) for _ in g] for g in map(tuple, groups)}
    def group_memory(g: tuple[int, ...]) -> Callable[[int, int], np.ndarray]:
        def memory(local_rank: int, mem: int) -> np.ndarray:  # IPC ranks of the group -> global
            return mems[g[local_rank]][mem]
        return memory

    detectors = {g: RaceDetector(len(g), group_memory(g)) if races else None for g in map(tuple, groups)}
    mailbox: dict[tuple[int, int], list[np.ndarray]] = {}
    pos = [0] * p
    machine: list[RankMachine | None] = [None] * p
    posted = [False] * p
    rng = random.Random(seed)

    def advance(r: int) -> bool:
        parts = plans[r].parts
        if pos[r] == len(parts):
            return False
        part, g = parts[pos[r]], group_of[r]
        if part.kind == "interp":
            prog = programs[r][pos[r]]
            assert prog is not None
            m = machine[r]
            if m is None:
                m = machine[r] = RankMachine(prog, group_memory(g), sigs[g], op, detectors[g])
            progressed = False
            while True:
                state = m.step()
                if state == "blocked":
                    return progressed
                progressed = True
                if state == "done":
                    machine[r] = None
                    pos[r] += 1
                    return True
        if not posted[r]:
            for q, s in part.sends:
                mailbox.setdefault((r, q), []).append(arr(r, s).copy())
            posted[r] = True
        if any(not mailbox.get((q, r)) for q, _ in part.recvs):
            # receives from one peer match in order: wait until every one is there
            need: dict[int, int] = {}
            for q, _ in part.recvs:
                need[q] = need.get(q, 0) + 1
            if any(len(mailbox.get((q, r), [])) < k for q, k in need.items()):
                return True
        for q, s in part.recvs:
            np.copyto(arr(r, s), mailbox[(q, r)].pop(0))
        for item in part.local:
            if isinstance(item, Copy):
                np.copyto(arr(r, item.dst), arr(r, item.src).copy())
            else:
                reduce_into(op or "sum", arr(r, item.dst), arr(r, item.a), arr(r, item.b))
        posted[r] = False
        pos[r] += 1
        return True

    while any(pos[r] < len(plans[r].parts) for r in range(p)):
        order = list(range(p)) if policy != "backward" else list(range(p - 1, -1, -1))
        if policy == "random":
            rng.shuffle(order)
        before = (list(pos), [m.pc if m else -1 for m in machine], sum(map(len, mailbox.values())))
        for r in order:
            advance(r)
        after = (list(pos), [m.pc if m else -1 for m in machine], sum(map(len, mailbox.values())))
        if before == after:
            raise InterpDeadlock(f"composed run stuck at parts {pos}")
    for r in range(p):
        fin = plans[r].filtered.finalize
        if fin is not None and fin.length:
            divide(arr(r, fin), p)
    return [m[o:o + n].copy() for m, o, n in outputs]
