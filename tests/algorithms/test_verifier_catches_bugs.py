"""The verifier must reject broken schedules, naming rank, step and buffer range."""

from __future__ import annotations

from dataclasses import replace

import pytest
from algo_cases import build

from collbench.algorithms import (
    Buf,
    Collective,
    Copy,
    Problem,
    Program,
    Recv,
    Reduce,
    Schedule,
    Send,
    Slice,
    Step,
    verify_both,
)
from collbench.algorithms.verify import verify


def _mutate(schedule: Schedule, rank: int, step_no: int, **changes) -> Schedule:
    """The schedule with fields of one step of one rank replaced."""
    programs = list(schedule.programs)
    prog = programs[rank]
    steps = list(prog.steps)
    steps[step_no] = replace(steps[step_no], **changes)
    programs[rank] = replace(prog, steps=tuple(steps))
    return replace(schedule, programs=tuple(programs))


def _all_errors(schedule: Schedule) -> list[str]:
    oop, inp = verify_both(schedule)
    return oop + inp


@pytest.fixture
def ring() -> Schedule:
    s = build("ring", "allreduce", 4, 10)
    assert verify_both(s) == ([], [])
    return s


def test_dropped_send(ring: Schedule) -> None:
    step = ring.programs[1].steps[2]
    bad = _mutate(ring, 1, 2, sends=())
    errors = verify(bad, False)
    assert any(f"rank 2 step {step.index} recv #0 from 1" in e and "sends no matching message"
               in e for e in errors), errors


def test_dropped_receive(ring: Schedule) -> None:
    step = ring.programs[3].steps[0]
    errors = verify(_mutate(ring, 3, 0, recvs=()), False)
    assert any(f"rank 2 step {step.index} send #0 to 3" in e and "posts no matching receive" in e
               for e in errors), errors


def test_duplicated_reduction(ring: Schedule) -> None:
    step = ring.programs[0].steps[1]
    (red,) = step.local
    again = Reduce(red.dst, red.dst, red.b)  # adds the received partial a second time
    errors = verify(_mutate(ring, 0, 1, local=(red, again)), False)
    assert any("duplicated" in e and f"rank 0 step {step.index} local #1 reduce" in e
               for e in errors), errors


def test_missing_reduction(ring: Schedule) -> None:
    errors = verify(_mutate(ring, 0, 1, local=()), False)
    assert any("missing" in e or "undefined" in e for e in errors), errors


def test_wrong_offset() -> None:
    s = build("ring", "allgather", 3, 4)
    step = s.programs[0].steps[0]
    (recv,) = step.recvs
    shifted = Recv(recv.peer, replace(recv.dst, offset=recv.dst.offset + 1))
    errors = verify(_mutate(s, 0, 0, recvs=(shifted,)), False)
    assert any("rank 0: result out[" in e for e in errors), errors


def test_mixing_element_indices() -> None:
    s = build("ring", "allreduce", 2, 4)
    # rank 0's reduction adds its own block 1 to the partner's block 0
    step = s.programs[0].steps[0]
    (red,) = step.local
    other_block = 2 if red.a.offset == 0 else 0
    wrong = Reduce(red.dst, Slice(Buf.INPUT, other_block, red.a.length), red.b)
    errors = verify(_mutate(s, 0, 0, local=(wrong,)), False)
    assert any("mixes source elements" in e for e in errors), errors


def test_read_of_undefined_scratch() -> None:
    s = build("ring", "allreduce", 3, 9)
    step = s.programs[1].steps[0]
    (red,) = step.local
    never_written = Slice(Buf.SCRATCH, 3, red.b.length)
    prog = replace(s.programs[1], scratch_len=10)
    programs = list(s.programs)
    programs[1] = prog
    s = replace(s, programs=tuple(programs))
    errors = verify(_mutate(s, 1, 0, local=(Reduce(red.dst, red.a, never_written),)), False)
    assert any(f"rank 1 step {step.index} local #0 reduce" in e and "reads undefined data" in e
               for e in errors), errors


def test_send_of_undefined_output() -> None:
    s = build("ring", "allgather", 2, 3)
    step = s.programs[0].steps[0]
    (send,) = step.sends
    unwritten = Send(send.peer, Slice(Buf.OUTPUT, 3, 3))  # rank 1's block: not there yet
    errors = verify(_mutate(s, 0, 0, sends=(unwritten,)), False)
    assert any("rank 0 step 0 send #0 to 1: reads undefined data at out[3:6]" in e
               for e in errors), errors


def _inplace_clobber(p: int = 2, n: int = 4) -> Schedule:
    """Correct out of place; in place the copy into the output destroys the input first."""
    programs = []
    for r in range(p):
        peer = 1 - r
        programs.append(Program(r, (Step(0, sends=(Send(peer, Slice(Buf.INPUT, 0, n)),),
                                         recvs=(Recv(peer, Slice(Buf.SCRATCH, 0, n)),),
                                         local=(Copy(Slice(Buf.SCRATCH, 0, n),
                                                     Slice(Buf.OUTPUT, 0, n)),
                                                Reduce(Slice(Buf.OUTPUT, 0, n),
                                                       Slice(Buf.OUTPUT, 0, n),
                                                       Slice(Buf.INPUT, 0, n)))),), n))
    return Schedule("clobber", Problem(Collective.ALLREDUCE, p, n), tuple(programs))


def test_in_place_clobber_is_caught_only_in_place() -> None:
    oop, inp = verify_both(_inplace_clobber())
    assert oop == []
    assert any("rank 0 step 0 local #1 reduce out[0:4] = out[0:4] + in[0:4]" in e
               and "duplicated" in e for e in inp), inp
    assert verify(_inplace_clobber(), True) == inp


def test_length_mismatch(ring: Schedule) -> None:
    step = ring.programs[1].steps[0]
    (recv,) = step.recvs
    shorter = Recv(recv.peer, replace(recv.dst, length=recv.dst.length - 1))
    errors = verify(_mutate(ring, 1, 0, recvs=(shorter,)), False)
    assert any(f"rank 1 step {step.index} recv #0 from 0" in e and "but rank 0 send #0 has" in e
               for e in errors), errors


@pytest.mark.parametrize("peer,why", [(0, "message to itself"), (9, "peer 9 is not a rank")])
def test_bad_peers(ring: Schedule, peer: int, why: str) -> None:
    step = ring.programs[0].steps[0]
    (send,) = step.sends
    errors = verify(_mutate(ring, 0, 0, sends=(Send(peer, send.src),)), False)
    assert any(f"rank 0 step {step.index} send #0" in e and why in e for e in errors), errors


def test_slice_outside_its_buffer(ring: Schedule) -> None:
    (recv,) = ring.programs[0].steps[0].recvs
    beyond = Recv(recv.peer, Slice(Buf.SCRATCH, ring.programs[0].scratch_len, recv.dst.length))
    errors = verify(_mutate(ring, 0, 0, recvs=(beyond,)), False)
    assert any("outside the" in e and "scratch buffer (scratch_len)" in e for e in errors), errors
    (send,) = ring.programs[0].steps[0].sends
    errors = verify(_mutate(ring, 0, 0, sends=(Send(send.peer, Slice(Buf.INPUT, 8, 5)),)), False)
    assert any("in[8:13] is outside the 10-element in buffer" in e for e in errors), errors


def test_zero_length_message(ring: Schedule) -> None:
    (send,) = ring.programs[0].steps[0].sends
    empty = Send(send.peer, replace(send.src, length=0))
    errors = verify(_mutate(ring, 0, 0, sends=(send, empty)), False)
    assert any("zero-length message" in e for e in errors), errors


def test_overlapping_receives_in_one_step() -> None:
    s = build("direct", "allgather", 3, 4)
    step = s.programs[0].steps[0]
    first, second = step.recvs
    errors = verify(_mutate(s, 0, 0, recvs=(first, Recv(second.peer, first.dst))), False)
    assert any(f"rank 0 step 0: recv #0 into {_fmt(first.dst)} overlaps recv #1" in e
               for e in errors), errors


def test_overlapping_receives_without_sends() -> None:
    n = 2
    programs = (Program(0, (Step(0, sends=(Send(1, Slice(Buf.INPUT, 0, n)),
                                           Send(1, Slice(Buf.INPUT, 0, n)))),)),
                Program(1, (Step(0, recvs=(Recv(0, Slice(Buf.OUTPUT, 0, n)),
                                           Recv(0, Slice(Buf.OUTPUT, 1, n)))),)))
    s = Schedule("twice", Problem(Collective.BROADCAST, 2, 3), programs)
    errors = verify(s, False)
    assert any("rank 1 step 0: recv #0 into out[0:2] overlaps recv #1 into out[1:3]" in e
               for e in errors), errors


def _fmt(slc: Slice) -> str:
    return f"{ {Buf.INPUT: 'in', Buf.OUTPUT: 'out', Buf.SCRATCH: 'scratch'}[slc.buf]}" \
           f"[{slc.offset}:{slc.offset + slc.length}]"


def test_receive_over_a_send_source_in_one_step() -> None:
    s = build("ring", "allgather", 3, 4)
    step = s.programs[1].steps[1]  # sends out block 0 (received in step 0), receives block 2
    (send,) = step.sends
    (recv,) = step.recvs
    errors = verify(_mutate(s, 1, 1, recvs=(Recv(recv.peer, send.src),)), False)
    assert any("overwrites the source of send #0" in e for e in errors), errors


def test_in_place_aliasing_hazard_is_caught_in_place_only() -> None:
    """Sending the input while receiving into the output is fine out of place, a race in place."""
    n = 4
    programs = tuple(Program(r, (Step(0, sends=(Send(1 - r, Slice(Buf.INPUT, 0, n)),),
                                      recvs=(Recv(1 - r, Slice(Buf.OUTPUT, 0, n)),),
                                      local=(Reduce(Slice(Buf.OUTPUT, 0, n),
                                                    Slice(Buf.OUTPUT, 0, n),
                                                    Slice(Buf.INPUT, 0, n)),)),))
                     for r in range(2))
    s = Schedule("race", Problem(Collective.ALLREDUCE, 2, n), programs)
    oop, inp = verify_both(s)
    assert oop == []
    assert any("rank 0 step 0: recv #0 into out[0:4] overwrites the source of send #0 (in[0:4])"
               in e for e in inp), inp


def test_step_indices_must_increase(ring: Schedule) -> None:
    errors = verify(_mutate(ring, 2, 1, index=ring.programs[2].steps[0].index), False)
    assert any("rank 2: step index" in e and "strictly increasing" in e for e in errors), errors


def test_write_to_the_input(ring: Schedule) -> None:
    (red,) = ring.programs[0].steps[0].local
    bad = Reduce(replace(red.dst, buf=Buf.INPUT), red.a, red.b)
    errors = verify(_mutate(ring, 0, 0, local=(bad,)), False)
    assert any("writes the input buffer" in e for e in errors), errors


def test_partially_overlapping_local_operands() -> None:
    s = build("ring", "allreduce", 1, 6)
    bad = Copy(Slice(Buf.INPUT, 0, 4), Slice(Buf.OUTPUT, 0, 4))
    shifted = Copy(Slice(Buf.OUTPUT, 0, 4), Slice(Buf.OUTPUT, 2, 4))
    errors = verify(_mutate(s, 0, 0, local=(bad, shifted)), False)
    assert any("destination partially overlaps the source" in e for e in errors), errors


def test_wrong_contributors_are_named() -> None:
    s = build("ring", "reduce_scatter", 3, 2)
    (red,) = s.programs[2].steps[-1].local
    errors = verify(_mutate(s, 2, len(s.programs[2].steps) - 1,
                            local=(Copy(red.a, red.dst),)), False)
    assert any("rank 2: result out[0:2] holds contributions of ranks {2} but needs {0-2} "
               "(missing {0-1})" in e for e in errors), errors


def test_errors_are_capped() -> None:
    s = build("direct", "allgather", 40, 5)
    broken = replace(s, programs=tuple(replace(p, steps=()) for p in s.programs))
    errors = verify(broken, False)
    assert 20 <= len(errors) <= 26 and errors[-1].startswith("... stopped after")
