"""Message counts: every step of Bruck and of the hierarchical allgather is one message per peer.

Bruck's allgather used to send a wrapped range as two messages (5 start-ups instead of 3 at
p = 8) and the hierarchical allgather one message per block on a blocked layout (the layout
Slurm gives); both now move contiguous ranges of a rotated / packed copy in scratch.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from algo_cases import build

from collbench.algorithms import Collective, Layout, Problem, get_algorithm
from collbench.algorithms.verify import verify_algorithm


def sends_per_rank(schedule) -> list[int]:
    return [sum(len(st.sends) for st in prog.steps) for prog in schedule.programs]


def recvs_per_rank(schedule) -> list[int]:
    return [sum(len(st.recvs) for st in prog.steps) for prog in schedule.programs]


def most_messages_to_one_peer(schedule) -> int:
    """The most messages any rank sends to (or receives from) one peer in one step."""
    worst = 0
    for prog in schedule.programs:
        for st in prog.steps:
            for ops in ((s.peer for s in st.sends), (r.peer for r in st.recvs)):
                worst = max(worst, max(Counter(ops).values(), default=0))
    return worst


@pytest.mark.parametrize("p", range(1, 65))
def test_bruck_sends_ceil_lg_p_messages_per_rank(p: int) -> None:
    expected = math.ceil(math.log2(p)) if p > 1 else 0
    s = build("bruck", "allgather", p, 3)
    assert sends_per_rank(s) == [expected] * p
    assert recvs_per_rank(s) == [expected] * p


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8, 13, 31, 64])
def test_bruck_verifies_in_and_out_of_place(p: int) -> None:
    for count in (0, 1, 3):
        assert verify_algorithm("bruck", Problem(Collective.ALLGATHER, p, count)) == []


def test_bruck_at_p_8_is_three_start_ups() -> None:
    assert sends_per_rank(build("bruck", "allgather", 8, 5)) == [3] * 8


SHAPES = [(2, 2), (4, 4), (8, 4), (3, 4), (5, 3), (16, 4), (4, 8)]   # (nodes, ranks per node)


def _allgather_option_sets() -> list[dict]:
    impl = get_algorithm("hierarchical").implementations[Collective.ALLGATHER]
    return [dict(o) for o in impl.verify_options] + [{"outer": "bruck"},
                                                     {"inner_allgather": "recursive_doubling"}]


@pytest.mark.parametrize("nodes,per_node", SHAPES)
def test_hierarchical_allgather_one_message_per_peer_per_step(nodes: int, per_node: int) -> None:
    p = nodes * per_node
    layout = Layout.blocked(p, per_node)
    for options in _allgather_option_sets():
        s = build("hierarchical", "allgather", p, 7, layout=layout, options=options)
        assert most_messages_to_one_peer(s) == 1, options


@pytest.mark.parametrize("nodes,per_node", SHAPES)
def test_hierarchical_allgather_default_message_count(nodes: int, per_node: int) -> None:
    """Defaults (recursive doubling across nodes, ring inside): one send and one receive per
    step; ``lg P`` sends across nodes (+1 for a rank in the fold, which sends in one of its
    two extra steps), then ``g - 1`` inside."""
    p = nodes * per_node
    s = build("hierarchical", "allgather", p, 7, layout=Layout.blocked(p, per_node))
    for prog in s.programs:
        assert all(len(st.sends) <= 1 and len(st.recvs) <= 1 for st in prog.steps)
    pof2 = 1 << (nodes.bit_length() - 1)
    outer = pof2.bit_length() - 1 + (1 if pof2 != nodes else 0)
    assert max(sends_per_rank(s)) == outer + per_node - 1


def test_hierarchical_allgather_packs_only_when_the_layout_needs_it() -> None:
    from collbench.algorithms.hierarchical import packed_order

    blocked, round_robin = Layout.blocked(12, 4), Layout.round_robin(12, 3)
    assert list(packed_order(round_robin)) == list(range(12))
    assert packed_order(blocked)[:4] == (0, 4, 8, 1)        # local index 0 of nodes 0, 1, 2, ...
    rr = build("hierarchical", "allgather", 12, 5, layout=round_robin)
    assert all(prog.scratch_len == 0 for prog in rr.programs)
    bl = build("hierarchical", "allgather", 12, 5, layout=blocked)
    assert all(prog.scratch_len == 12 * 5 for prog in bl.programs)
    for layout in (blocked, round_robin):
        for options in _allgather_option_sets():
            problem = Problem(Collective.ALLGATHER, 12, 5, layout=layout)
            assert verify_algorithm("hierarchical", problem, options) == [], options


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8, 13, 64, 129])
def test_bruck_flat_shortcut_builds_the_general_programs(p: int) -> None:
    """For flat units Bruck computes positions and the inverse rotation in O(1) per member, not
    by walking every member's blocks (O(p) per rank, 20 s per schedule at 1000 ranks). The same
    core with an equal units function that is not ``flat_units`` takes the general path: both
    must build identical programs on every rank, for empty blocks (count < p) too."""
    from collbench.algorithms import bruck
    from collbench.algorithms._build import INPUT, OUTPUT, Builder, Partition, world
    from collbench.algorithms._flat import flat_units

    def same_units(lo: int, hi: int):  # flat_units's result, under another identity
        return ((lo, hi),)

    for count in sorted({0, 1, max(p - 1, 0), p + 1, 7}):
        part = Partition(count * p, p)
        for rank in range(p) if p < 64 else (0, 1, p // 2, p - 2, p - 1):
            programs = []
            for units in (flat_units, same_units):
                b = Builder(rank)
                bruck.allgather_core(b, world(p, rank), part, OUTPUT, units, INPUT.at(0, count), 0)
                programs.append(b.build())
            assert programs[0] == programs[1], (p, count, rank)
