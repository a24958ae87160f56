"""The vectorized proof (``_proof.prove``) against the segment verifier it stands in for.

``verify``/``verify_both`` trust a True from ``prove`` without running the segment verifier, so
True must mean "the segment verifier finds nothing" on every schedule, correct or broken. These
tests call ``prove`` directly (bypassing the size heuristic) on every registered algorithm and
on mutants of large schedules, where the fast path is the one that runs in a sweep.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from algo_cases import IMPLEMENTATIONS, build, impl_id

# Every test of the bug catalogue again, with the fast path forced on: whatever ``prove``
# answers, each bug must still be reported with its message (imported tests run here too).
from test_verifier_catches_bugs import *  # noqa: F401,F403  (tests and the ring fixture)

import collbench.algorithms._proof as symbolic
import collbench.algorithms.verify as verify_module
from collbench.algorithms import Buf, Collective, Copy, Problem, Program, Recv, Reduce, Schedule, Send, Slice, Step
from collbench.algorithms.collectives import descriptor
from collbench.algorithms.verify import _cases, default_counts, expected_output


@pytest.fixture(autouse=True)
def _always_prove(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "worth_proving", lambda programs: True)


def _segment_clean(schedule: Schedule, placements: tuple[bool, ...]) -> bool:
    verifier = verify_module._Verifier(schedule, placements)
    return all(not errors for errors in verifier.run())


def _prove(schedule: Schedule, placements: tuple[bool, ...] = (False, True)) -> bool:
    problem = schedule.problem
    return symbolic.prove(schedule, placements, lambda r: expected_output(problem, r))


@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_prove_agrees_with_the_segment_verifier_on_the_registry(pair) -> None:
    """Sound everywhere, and it proves every correct schedule of the registry (a schedule it
    cannot prove is still verified, by the segment verifier, only more slowly: if a new
    algorithm lands here, see why ``prove`` gives up before relaxing this)."""
    algo, impl = pair
    unproved = []
    for p in (1, 2, 5, 8, 12, 17):
        for options, layout, root in _cases(impl, p, False):
            for count in default_counts(p):
                problem = Problem(impl.collective, p, count, root, layout)
                if algo.precondition(problem, op=None, options=options):
                    continue
                schedule = algo.schedule(problem, options)
                for placements in ((False, True), (False,), (True,)):
                    fast = _prove(schedule, placements)
                    clean = _segment_clean(schedule, placements)
                    assert not fast or clean, (problem, options, placements)
                    if clean and not fast:
                        unproved.append((problem, dict(options), placements))
    assert not unproved, unproved[:3]


def _mutants(schedule: Schedule, rng: random.Random, n: int):
    """Small random edits of one step of one rank: most break the schedule."""
    programs = schedule.programs
    done = 0
    while done < n:
        r = rng.randrange(len(programs))
        prog = programs[r]
        if not prog.steps:
            continue
        k = rng.randrange(len(prog.steps))
        step = prog.steps[k]
        kind = rng.choice(["drop_send", "drop_recv", "drop_local", "dup_local", "shift_recv",
                           "shift_send", "peer", "index", "buf", "swap_operand", "shorten"])
        new = _edit(step, kind, rng, len(programs), prog.scratch_len)
        if new is None or new == step:
            continue
        steps = list(prog.steps)
        steps[k] = new
        changed = list(programs)
        changed[r] = replace(prog, steps=tuple(steps))
        done += 1
        yield kind, replace(schedule, programs=tuple(changed))


def _moved(slc: Slice, by: int) -> Slice:
    return replace(slc, offset=max(0, slc.offset + by))


def _edit(step: Step, kind: str, rng: random.Random, p: int, scratch: int) -> Step | None:
    if kind == "drop_send" and step.sends:
        return replace(step, sends=step.sends[1:])
    if kind == "drop_recv" and step.recvs:
        return replace(step, recvs=step.recvs[:-1])
    if kind == "drop_local" and step.local:
        return replace(step, local=step.local[:-1])
    if kind == "dup_local" and step.local:
        return replace(step, local=step.local + step.local[-1:])
    if kind == "shift_recv" and step.recvs:
        recv = step.recvs[0]
        return replace(step, recvs=(Recv(recv.peer, _moved(recv.dst, rng.choice([-1, 1]))),)
                       + step.recvs[1:])
    if kind == "shift_send" and step.sends:
        send = step.sends[0]
        return replace(step, sends=(Send(send.peer, _moved(send.src, rng.choice([-1, 1]))),)
                       + step.sends[1:])
    if kind == "peer" and step.sends:
        send = step.sends[0]
        return replace(step, sends=(Send((send.peer + 1) % p, send.src),) + step.sends[1:])
    if kind == "index":
        return replace(step, index=step.index + rng.choice([-1, 1]))
    if kind == "buf" and step.local:
        op = step.local[0]
        if type(op) is Copy:
            src = replace(op.src, buf=Buf.SCRATCH if op.src.buf is not Buf.SCRATCH else Buf.INPUT)
            return replace(step, local=(Copy(src, op.dst),) + step.local[1:])
    if kind == "swap_operand" and step.local:
        op = step.local[-1]
        if type(op) is Reduce:
            return replace(step, local=step.local[:-1] + (Reduce(op.dst, op.a, op.a),))
    if kind == "shorten" and step.sends and step.recvs:
        send, recv = step.sends[0], step.recvs[0]
        if send.src.length > 1:
            return replace(step, sends=(Send(send.peer, replace(send.src,
                                                                length=send.src.length - 1)),)
                           + step.sends[1:])
    return None


_LARGE = [("ring", "allreduce", 24, 97), ("ring", "allgather", 16, 33),
          ("direct", "reduce_scatter", 16, 21), ("recursive_doubling", "allgather", 12, 50),
          ("halving_doubling", "allreduce", 16, 64), ("double_binary_tree", "allreduce", 13, 40),
          ("hierarchical", "reduce_scatter", 16, 19), ("bruck", "allgather", 19, 7),
          ("tree", "reduce", 16, 48)]


@pytest.mark.parametrize("case", _LARGE, ids=lambda c: f"{c[0]}-{c[1]}-p{c[2]}")
def test_prove_rejects_every_broken_mutant(case) -> None:
    """A mutant the segment verifier faults is never proved; an intact one usually is."""
    name, collective, p, count = case
    schedule = build(name, collective, p, count)
    assert _prove(schedule) and _segment_clean(schedule, (False, True))
    rng = random.Random(f"{name}-{collective}-{p}-{count}")
    broken = 0
    for kind, mutant in _mutants(schedule, rng, 40):
        clean = _segment_clean(mutant, (False, True))
        assert not _prove(mutant) or clean, kind
        broken += not clean
    assert broken >= 20  # the mutations really exercise the rejecting side


def test_prove_names_nothing_but_rejects_each_bug_kind() -> None:
    """One mutant per rule of the verifier on a schedule large enough for the fast path."""
    s = build("ring", "allreduce", 8, 40)
    prog = s.programs[3]
    step = prog.steps[2]
    (send,), (recv,), (red,) = step.sends, step.recvs, step.local

    def with_step(**changes) -> Schedule:
        programs = list(s.programs)
        steps = list(prog.steps)
        steps[2] = replace(step, **changes)
        programs[3] = replace(prog, steps=tuple(steps))
        return replace(s, programs=tuple(programs))

    bugs = {
        "unmatched send": with_step(recvs=()),
        "unmatched receive": with_step(sends=()),
        "duplicate": with_step(local=(red, Reduce(red.dst, red.dst, red.b))),
        "missing reduction": with_step(local=()),
        "mixed elements": with_step(local=(Reduce(red.dst, _moved(red.a, 1), red.b),)),
        "length": with_step(recvs=(Recv(recv.peer, replace(recv.dst,
                                                           length=recv.dst.length - 1)),)),
        "self message": with_step(sends=(Send(3, send.src),)),
        "peer out of range": with_step(sends=(Send(99, send.src),)),
        "bool peer": with_step(sends=(Send(True, send.src),)),
        "outside": with_step(recvs=(Recv(recv.peer, Slice(Buf.SCRATCH, 10**6, 1)),)),
        "zero length": with_step(sends=(send, Send(send.peer, replace(send.src, length=0)))),
        "writes input": with_step(local=(Reduce(replace(red.dst, buf=Buf.INPUT), red.a,
                                                red.b),)),
        "undefined": with_step(local=(Reduce(red.dst, red.a, Slice(Buf.OUTPUT, 0,
                                                                   red.b.length)),)),
        "hazard": with_step(recvs=(Recv(recv.peer, send.src),)),
        "partial overlap": with_step(local=(red, Copy(Slice(Buf.OUTPUT, 0, 4),
                                                      Slice(Buf.OUTPUT, 2, 4)))),
        "step order": with_step(index=prog.steps[1].index),
        "float offset": with_step(sends=(Send(send.peer, replace(send.src,
                                                                 offset=float(send.src.offset))),)),
        "unknown op": with_step(local=(red, "nop")),
    }
    assert _prove(s)
    for what, bad in bugs.items():
        assert not _prove(bad), what
        # (a float offset equal to an int is harmless to the segment lists: only the fast
        # path, which would truncate it, refuses it)
        assert what == "float offset" or not _segment_clean(bad, (False, True)), what


def test_prove_checks_the_in_place_aliasing() -> None:
    """Correct out of place, wrong in place: only the in-place proof fails."""
    n = 4
    programs = tuple(Program(r, (Step(0, sends=(Send(1 - r, Slice(Buf.INPUT, 0, n)),),
                                      recvs=(Recv(1 - r, Slice(Buf.OUTPUT, 0, n)),),
                                      local=(Reduce(Slice(Buf.OUTPUT, 0, n),
                                                    Slice(Buf.OUTPUT, 0, n),
                                                    Slice(Buf.INPUT, 0, n)),)),))
                     for r in range(2))
    s = Schedule("race", Problem(Collective.ALLREDUCE, 2, n), programs)
    assert _prove(s, (False,))
    assert not _prove(s, (True,))
    assert not _prove(s, (False, True))


def test_prove_shares_one_expected_list_per_result() -> None:
    """Ranks that share one postcondition list are converted once, and a list that does not
    cover the output is refused rather than trusted."""
    s = build("ring", "allgather", 6, 5)
    problem = s.problem
    shared = expected_output(problem, 0)
    assert descriptor(problem.collective).same_result
    assert symbolic.prove(s, (False, True), lambda r: shared)
    short = shared[:-1]
    assert not symbolic.prove(s, (False, True), lambda r: short)


def test_a_postcondition_beyond_the_machine_words_is_refused_not_raised() -> None:
    """Up to 64 ranks contributor sets are uint64: a postcondition naming a rank that cannot
    exist (bit 64 and up, or a negative set) is "not shown correct", never an exception, and
    from 65 ranks on sets of any width are still compared exactly."""
    s = build("ring", "allgather", 6, 5)
    problem = s.problem
    pieces = expected_output(problem, 0)
    assert symbolic.prove(s, (False, True), lambda r: pieces)
    for bad in (1 << 64, -1):
        wrong = [(n, idx, bad) for n, idx, _ in pieces]
        assert not symbolic.prove(s, (False, True), lambda r, wrong=wrong: wrong)
    wide = build("recursive_doubling", "allgather", 65, 3)
    right = expected_output(wide.problem, 0)
    assert symbolic.prove(wide, (False,), lambda r: right)
    extra = [(n, idx, mask | (1 << 65)) for n, idx, mask in right]  # a 66th rank's bit
    assert not symbolic.prove(wide, (False,), lambda r: extra)


def test_closure_stops_instead_of_cascading() -> None:
    """A transfer that shifts a buffer into itself would cut it into single elements: the
    closure stops early, and the state checks at run time that atoms still hold one run."""
    import numpy as np

    bounds = np.array([0, 1, 1000])
    shifted = symbolic.close_boundaries(bounds, np.array([0]), np.array([1]), np.array([999]))
    assert shifted.size < 20
    closed = symbolic.close_boundaries(np.array([0, 5, 10, 20]), np.array([0]), np.array([10]),
                                       np.array([10]))
    assert closed.tolist() == [0, 5, 10, 15, 20]


def test_an_atom_spanning_two_runs_is_not_proved() -> None:
    """Without closure, a destination atom can straddle two source atoms; the copy is exact only
    when they continue each other at that moment."""
    import numpy as np

    bounds = np.array([0, 4, 8, 16])  # source atoms [0,4) [4,8); destination atom [8,16)
    sources = symbolic.Sources(bounds, np.array([0]), np.array([8]), np.array([8]))
    assert sources.before.tolist() == [0] and sources.after.tolist() == [1]
    state = symbolic.AtomState(3)
    state.idx[:2] = [10, 14]  # one run: 10..13 then 14..17
    state.mask[:2] = [1, 1]
    assert state.copy(sources, 0, 1) and state.idx[2] == 10 and state.mask[2] == 1
    state.idx[1] = 20  # no longer one run
    assert not state.copy(sources, 0, 1)
    state.idx[1], state.mask[1] = 14, 2  # continuing elements, other contributors
    assert not state.copy(sources, 0, 1)


def test_hazard_check_handles_huge_address_spaces() -> None:
    """Groups are compared inside their own address range, so many groups over a huge address
    space (where ``group * span`` would overflow 64 bits) are still checked, not given up on."""
    import numpy as np

    span = 1 << 40
    groups = np.array([0, 0, 5_000_000, 5_000_000], dtype=np.int64)
    start = np.array([0, span - 10, 0, span - 10], dtype=np.int64)
    is_recv = np.array([True, True, True, True])
    assert symbolic._hazard_free(groups, start, start + 10, is_recv)
    overlapping = start.copy()
    overlapping[3] = 5                       # the second group's receives overlap
    assert not symbolic._hazard_free(groups, overlapping, overlapping + 10, is_recv)
    # a receive in one group may overlap memory of another group (another rank or step)
    assert symbolic._hazard_free(np.array([0, 1]), np.array([0, 0]), np.array([10, 10]),
                                 np.array([True, True]))


def test_merge_sorted_equals_a_sort_of_both() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(200):
        both = np.unique(rng.integers(0, 60, size=int(rng.integers(0, 40))))
        pick = rng.random(both.size) < 0.5
        old, new = both[~pick], both[pick]
        merged = symbolic.merge_sorted(old, new, np.searchsorted(old, new))
        assert merged.tolist() == both.tolist()
