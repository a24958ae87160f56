"""Schedules written as rows (algorithms/rows.py): the Builder's rules, the ring's emitters
against the ring's cores, and the verifier's proof on rows catching what it must."""

from __future__ import annotations

import numpy as np
import pytest

from collbench.algorithms import (
    Collective,
    Layout,
    Problem,
    direct,
    direct_rows,
    get_algorithm,
    registry,
    ring,
    ring_rows,
    verify_algorithm,
)
from collbench.algorithms._build import Builder, make_slice
from collbench.algorithms.bruck import _copy_runs
from collbench.algorithms.rows import BUFS, IN, OUT, SCR, Rows, RowsBuilder, per_rank
from collbench.algorithms.schedule import Buf

A, G, RS = Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER
# each emitter beside the Builder-based generator of the same schedule (the family's cores)
EMITTERS = [(A, ring_rows.allreduce_rows, ring.allreduce),
            (G, ring_rows.allgather_rows, ring.allgather),
            (RS, ring_rows.reduce_scatter_rows, ring.reduce_scatter),
            (A, direct_rows.allreduce_rows, direct.allreduce),
            (G, direct_rows.allgather_rows, direct.allgather),
            (RS, direct_rows.reduce_scatter_rows, direct.reduce_scatter)]


def test_rows_builder_follows_the_builders_rules() -> None:
    """Empty messages and operations and self-copies are dropped, scratch is the furthest
    scratch element touched, and a step's items keep their seq order (ties: emission order)."""
    rb = RowsBuilder(2)
    b0, b1 = Builder(0), Builder(1)
    # rank 0: two sends to 1 in step 0 emitted seq 1 then seq 0; an empty one in between
    rb.send(0, 0, 1, (OUT, 4, 2), seq=1)
    rb.send(0, 0, 1, (IN, 0, 0), seq=0)
    rb.send(0, 0, 1, (IN, 0, 3), seq=0)
    b0.send(0, 1, make_slice(Buf.INPUT, 0, 3))
    b0.send(0, 1, make_slice(Buf.OUTPUT, 4, 2))
    # rank 1: the matching receives into scratch, then local work in step 0 and step 2
    rb.recv(0, 1, 0, (SCR, 0, 3))
    rb.recv(0, 1, 0, (SCR, 3, 2), seq=1)
    b1.recv(0, 0, make_slice(Buf.SCRATCH, 0, 3))
    b1.recv(0, 0, make_slice(Buf.SCRATCH, 3, 2))
    rb.copy(0, 1, (OUT, 1, 2), (OUT, 1, 2))               # onto itself: dropped
    rb.reduce(0, 1, (OUT, 0, 3), (IN, 0, 3), (SCR, 0, 3))
    rb.copy(0, 1, (SCR, 3, 2), (OUT, 3, 2))
    rb.reduce(2, 1, (OUT, 0, 0), (IN, 0, 0), (SCR, 9, 0))  # empty: dropped (no scratch 9)
    b1.reduce(0, make_slice(Buf.OUTPUT, 0, 3), make_slice(Buf.INPUT, 0, 3),
              make_slice(Buf.SCRATCH, 0, 3))
    b1.copy(0, make_slice(Buf.SCRATCH, 3, 2), make_slice(Buf.OUTPUT, 3, 2))
    rows = rb.finish()
    assert rows.programs(2) == (b0.build(), b1.build())
    assert rows.scratch.tolist() == [0, 5]
    assert rows.copies[:, 2].tolist() == [1] and rows.reduces[:, 2].tolist() == [0]


def _layouts(p: int) -> list[Layout | None]:
    for d in range(2, p):
        if p % d == 0:
            return [None, Layout.blocked(p, d), Layout.round_robin(p, p // d)]
    return [None]


@pytest.mark.parametrize("collective,emit,legacy", EMITTERS,
                         ids=[f"{e.__module__.rsplit('.', 1)[-1]}-{c.value}" for c, e, _ in EMITTERS])
def test_rows_are_the_programs_the_cores_build(collective, emit, legacy) -> None:
    """Every rank, every count of the verifier's spread, blocked and round-robin layouts, and
    for the ring 1-4 channels (their rings follow the nodes): the same programs, and one rank's
    rows (what executors get) are that rank's program."""
    ring_like = emit.__module__.endswith("ring_rows")
    for p in (1, 2, 3, 4, 5, 6, 7, 8, 9, 12):
        for count in sorted({0, 1, p - 1, p, p + 1, 37}):
            for channels in (1, 2, 3, 4) if ring_like else (1,):
                for layout in _layouts(p):
                    problem = Problem(collective, p, count, 0, layout)
                    options = {"channels": channels} if ring_like else {}
                    want = tuple(legacy(problem, r, options) for r in range(p))
                    assert emit(problem, np.arange(p), options).programs(p) == want, \
                        (p, count, channels, layout)
                    r = (count + channels) % p
                    assert per_rank(emit)(problem, r, options) == want[r]


def test_the_registry_derives_the_generator_from_the_rows() -> None:
    algo = get_algorithm("ring")
    problem = Problem(A, 6, 13)
    assert algo.implementations[A].rows is ring_rows.allreduce_rows
    rows = algo.rows(problem, {"channels": 2})
    assert isinstance(rows, Rows)
    assert algo.schedule(problem, {"channels": 2}).programs == rows.programs(6)
    assert algo.program(problem, 4, {"channels": 2}) == rows.program(4)
    assert get_algorithm("tree").rows(Problem(A, 6, 13)) is None


def test_register_takes_a_generator_or_rows_exactly_once() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        registry.register("rows_twice", A, ring.allreduce, rows=ring_rows.allreduce_rows,
                          description="x")
    with pytest.raises(ValueError, match="exactly one"):
        registry.register("rows_none", A, description="x")


def _registered(name: str, emit) -> None:
    registry.register(name, A, rows=emit, defaults={"channels": 1}, description="broken ring")


@pytest.mark.parametrize("p", [6, 24])
def test_a_broken_rows_schedule_fails_verification_with_messages(p: int) -> None:
    """Rows the proof cannot show correct go to the segment verifier, which names the fault:
    one rank's reduction dropped (small and large schedules, below and above the proof's
    threshold), and a negative step index."""
    def drop_one_reduce(problem, ranks, options):
        rows = ring_rows.allreduce_rows(problem, ranks, options)
        victim = np.flatnonzero(rows.reduces[:, 1] == 1)[:1]
        return Rows(rows.sends, rows.recvs, rows.copies, np.delete(rows.reduces, victim, 0),
                    rows.scratch)

    def negative_step(problem, ranks, options):
        rows = ring_rows.allreduce_rows(problem, ranks, options)
        sends, recvs = rows.sends.copy(), rows.recvs.copy()
        sends[:, 0] -= 1
        recvs[:, 0] -= 1
        return Rows(sends, recvs, rows.copies, rows.reduces, rows.scratch)

    try:
        _registered("broken_ring_rows", drop_one_reduce)
        errors = verify_algorithm("broken_ring_rows", Problem(A, p, 10007))
        assert errors and any("out-of-place" in e for e in errors), errors
        _registered("negative_ring_rows", negative_step)
        errors = verify_algorithm("negative_ring_rows", Problem(A, p, 10007))
        assert any("step" in e for e in errors), errors
    finally:
        for name in ("broken_ring_rows", "negative_ring_rows"):
            try:
                registry.unregister(name)
            except ValueError:
                pass
    assert verify_algorithm("ring", Problem(A, p, 10007)) == []


def test_copy_runs_merges_what_is_contiguous_on_both_sides() -> None:
    """One row of pairs per rank: neighbours contiguous in source and destination become one
    copy, as bruck._copy_runs does for one rank's list; the runs keep their order."""
    rb, b0, b1 = RowsBuilder(2), Builder(0), Builder(1)
    pairs = {0: [(IN, 0, OUT, 4), (IN, 2, OUT, 6), (IN, 4, OUT, 0), (SCR, 6, OUT, 2)],
             1: [(IN, 6, OUT, 0), (IN, 4, OUT, 2), (IN, 8, OUT, 4), (IN, 10, OUT, 6)]}
    cols = np.array([pairs[0], pairs[1]])            # (rank, pair, field)
    rb.copy_runs(3, np.array([0, 1]), (cols[:, :, 0], cols[:, :, 1], 2),
                 (cols[:, :, 2], cols[:, :, 3], 2))
    for b, rank in ((b0, 0), (b1, 1)):
        _copy_runs(b, 3, [(make_slice(BUFS[sb], so, 2), make_slice(BUFS[db], do, 2))
                          for sb, so, db, do in pairs[rank]])
    assert rb.finish().programs(2) == (b0.build(), b1.build())
    assert [len(b.build().steps[0].local) for b in (b0, b1)] == [3, 3]   # one merge each


ROWS_IMPLEMENTATIONS = [(algo.name, coll) for algo in registry.algorithms() if not algo.native
                        for coll, impl in algo.implementations.items() if impl.rows is not None]


@pytest.mark.parametrize("name,collective", ROWS_IMPLEMENTATIONS,
                         ids=[f"{n}-{c.value}" for n, c in ROWS_IMPLEMENTATIONS])
def test_one_rank_alone_gets_its_rows_of_the_whole_schedule(name, collective) -> None:
    """What an executor asks for (one rank's rows) is that rank's part of what the verifier
    proves (every rank's rows), for every rank, option set and layout the sweep uses."""
    algo = get_algorithm(name)
    impl = algo.implementations[collective]
    for p in (1, 2, 5, 8, 12):
        layouts = list(impl.verify_layouts(p)) if impl.verify_layouts else [None]
        for options in impl.verify_options:
            for layout in layouts:
                problem = Problem(collective, p, p + 3, 0, layout)
                if algo.precondition(problem, options=options):
                    continue
                rows = algo.rows(problem, options)
                for r in range(p):
                    assert algo.program(problem, r, options) == rows.program(r), (p, options, r)


def test_rows_emitted_differently_for_one_rank_fail_verification() -> None:
    """An emitter whose rows for a rank alone differ from that rank's rows in the whole schedule
    (here: rank 0 alone sends from the wrong buffer) is reported, even though the whole
    schedule is correct."""
    def two_faced(problem, ranks, options):
        rows = ring_rows.allreduce_rows(problem, ranks, options)
        if len(ranks) == 1 and ranks[0] == 0 and len(rows.sends):
            sends = rows.sends.copy()
            sends[0, 3] = OUT
            rows = Rows(sends, rows.recvs, rows.copies, rows.reduces, rows.scratch)
        return rows

    try:
        _registered("two_faced_rows", two_faced)
        errors = verify_algorithm("two_faced_rows", Problem(A, 8, 100))
        assert len(errors) == 1 and "rank 0's program, emitted for that rank alone" in errors[0]
    finally:
        registry.unregister("two_faced_rows")


def test_rows_out_of_program_order_are_not_proved() -> None:
    from collbench.algorithms._proof import prove_rows
    from collbench.algorithms.rows import in_program_order
    from collbench.algorithms.verify import _expected

    problem = Problem(A, 24, 10007)
    rows = ring_rows.allreduce_rows(problem, np.arange(24), {})
    assert in_program_order(rows) and prove_rows(problem, rows, (False, True), _expected(problem))
    shuffled = Rows(rows.sends[::-1].copy(), rows.recvs, rows.copies, rows.reduces, rows.scratch)
    assert not in_program_order(shuffled)
    # rows written by hand need not be sorted for Rows.program (one send per rank and step here)
    assert [shuffled.program(r) for r in (0, 5, 23)] == [rows.program(r) for r in (0, 5, 23)]
    assert not prove_rows(problem, shuffled, (False, True), _expected(problem))
    twice = rows.reduces.copy()
    twice[1, 2] = twice[0, 2]
    twice[1, :2] = twice[0, :2]            # two reductions of one rank at one position
    assert not in_program_order(Rows(rows.sends, rows.recvs, rows.copies, twice, rows.scratch))


def test_rows_that_differ_only_in_form_still_give_the_same_program() -> None:
    """The emitted-alone check compares rows first and programs only where rows differ: rows
    numbered otherwise (positions shifted) but making the same program are accepted."""
    def renumbered(problem, ranks, options):
        rows = ring_rows.allreduce_rows(problem, ranks, options)
        if len(ranks) == 1 and len(rows.reduces):
            reduces = rows.reduces.copy()
            reduces[:, 2] += 10
            rows = Rows(rows.sends, rows.recvs, rows.copies, reduces, rows.scratch)
        return rows

    try:
        _registered("renumbered_rows", renumbered)
        assert verify_algorithm("renumbered_rows", Problem(A, 8, 100)) == []
    finally:
        registry.unregister("renumbered_rows")


def test_rows_with_an_unknown_buffer_code_are_refused_not_crashed() -> None:
    """A buffer column outside 0..2 would index the length table from the end (or past it):
    the proof refuses it instead."""
    from collbench.algorithms._proof import prove_rows
    from collbench.algorithms.verify import _expected

    problem = Problem(A, 24, 10007)
    rows = ring_rows.allreduce_rows(problem, np.arange(24), {})
    for code in (-1, 3):
        sends = rows.sends.copy()
        sends[0, 3] = code
        bad = Rows(sends, rows.recvs, rows.copies, rows.reduces, rows.scratch)
        assert not prove_rows(problem, bad, (False, True), _expected(problem))


def test_an_emitter_that_fails_is_reported_not_raised() -> None:
    """A plugin emitter naming an unknown buffer, or raising, is a finding of the sweep with
    its reason: `collbench verify` goes on with the other cases."""
    def unknown_buffer(problem, ranks, options):
        rows = ring_rows.allreduce_rows(problem, ranks, options)
        sends = rows.sends.copy()
        sends[:, 3] = 7
        return Rows(sends, rows.recvs, rows.copies, rows.reduces, rows.scratch)

    def raising(problem, ranks, options):
        raise ZeroDivisionError("a bug in the emitter")

    try:
        _registered("unknown_buffer_rows", unknown_buffer)
        _registered("raising_rows", raising)
        errors = verify_algorithm("unknown_buffer_rows", Problem(A, 4, 10))
        assert errors == ["building the schedule raised ValueError: rows name buffer codes "
                          "outside 0..2 (input, output, scratch): [7]"]
        errors = verify_algorithm("raising_rows", Problem(A, 4, 10))
        assert errors == ["building the schedule raised ZeroDivisionError: a bug in the emitter"]
        from collbench.algorithms import verify_all
        report = verify_all(3, extra_ranks=(), algorithms=["raising_rows"])
        assert not report.ok and all(f.errors == tuple(errors) for e in report.entries
                                     for f in e.failures)
    finally:
        registry.unregister("unknown_buffer_rows")
        registry.unregister("raising_rows")
