"""Shape of the schedules: step counts, bytes moved and scratch match the algorithms' costs."""

from __future__ import annotations

import math

import pytest
from algo_cases import build

from collbench.algorithms import Buf, Collective, Layout, Problem, get_algorithm
from collbench.algorithms._build import default_chunks
from collbench.algorithms.double_binary_tree import btree_parent, trees


def steps(schedule) -> int:
    return len({st.index for prog in schedule.programs for st in prog.steps})


def last_step(schedule) -> int:
    return max(st.index for prog in schedule.programs for st in prog.steps)


def sent(schedule, rank: int) -> int:
    return sum(s.src.length for st in schedule.programs[rank].steps for s in st.sends)


def scratch(schedule) -> int:
    return max(prog.scratch_len for prog in schedule.programs)


@pytest.mark.parametrize("p", [2, 3, 4, 7, 8, 16])
def test_ring_allreduce_is_bandwidth_optimal(p: int) -> None:
    n = 10 * p + 3
    s = build("ring", "allreduce", p, n)
    assert steps(s) == 2 * (p - 1)
    block = math.ceil(n / p)
    for r in range(p):
        assert 2 * (n - 2 * block) <= sent(s, r) <= 2 * (n - n // p)
    assert scratch(s) == block


@pytest.mark.parametrize("p", [2, 4, 8, 16, 32])
def test_power_of_two_log_algorithms(p: int) -> None:
    lg = p.bit_length() - 1
    n = 64 * p
    rd = build("recursive_doubling", "allreduce", p, n)
    assert steps(rd) == lg and all(sent(rd, r) == lg * n for r in range(p))
    rab = build("rabenseifner", "allreduce", p, n)
    assert steps(rab) == 2 * lg
    assert all(sent(rab, r) == 2 * (n - n // p) for r in range(p))
    assert scratch(rab) == n // 2
    rh = build("recursive_halving", "reduce_scatter", p, 64)
    assert steps(rh) == lg and all(sent(rh, r) == (p - 1) * 64 for r in range(p))
    ag = build("recursive_doubling", "allgather", p, 64)
    assert steps(ag) == lg and all(sent(ag, r) == (p - 1) * 64 for r in range(p))


@pytest.mark.parametrize("p", [3, 5, 6, 7, 12, 13])
def test_non_powers_of_two_fold_costs_two_steps(p: int) -> None:
    lg = p.bit_length() - 1
    assert steps(build("recursive_doubling", "allreduce", p, 40)) == lg + 2
    assert last_step(build("rabenseifner", "allreduce", p, 40)) + 1 == 2 * lg + 2
    assert last_step(build("recursive_halving", "reduce_scatter", p, 5)) + 1 == lg + 2
    assert last_step(build("recursive_doubling", "allgather", p, 5)) + 1 == lg + 2


@pytest.mark.parametrize("p", [2, 3, 5, 8, 13, 64])
def test_logarithmic_step_counts(p: int) -> None:
    lg = math.ceil(math.log2(p))
    assert steps(build("bruck", "allgather", p, 3)) == lg
    assert steps(build("tree", "allreduce", p, 8)) == 2 * lg
    assert steps(build("tree", "broadcast", p, 8, root=p - 1)) == lg
    assert steps(build("tree", "reduce", p, 8, root=p // 2)) == lg
    assert all(sent(build("bruck", "allgather", p, 3), r) == 3 * (p - 1) for r in range(p))


@pytest.mark.parametrize("p", [2, 3, 6])
def test_direct_algorithms(p: int) -> None:
    n = 4 * p
    ar = build("direct", "allreduce", p, n)
    assert steps(ar) == 1 and scratch(ar) == (p - 1) * n
    assert steps(build("direct", "allgather", p, 3)) == 1
    rs = build("direct", "reduce_scatter", p, 4)
    assert steps(rs) == p - 1 and scratch(rs) == 4


@pytest.mark.parametrize("p,chunks", [(2, 1), (4, 3), (7, 4), (16, 2), (33, 5)])
def test_double_binary_tree_pipeline_length(p: int, chunks: int) -> None:
    s = build("double_binary_tree", "allreduce", p, 100 * p, options={"chunks": chunks})
    height = trees(p)[0].height[0]
    assert last_step(s) + 1 == chunks + 2 * height - 1
    # one chunk per child per tree: four chunk slots at most
    assert scratch(s) <= 4 * math.ceil(100 * p / 2 / chunks)
    # every rank sends each half up once and down to each child: about 2n in all at most
    assert max(sent(s, r) for r in range(p)) <= 2 * 100 * p + 4


def test_default_pipeline_chunks() -> None:
    assert default_chunks(0) == 1 and default_chunks(8192) == 1
    assert default_chunks(256 * 1024) == 6
    assert default_chunks(16 * 1024 * 1024) == 45
    assert default_chunks(10 ** 10) == 64


@pytest.mark.parametrize("n", list(range(1, 70)) + [100, 128, 255, 1000])
def test_nccl_trees(n: int) -> None:
    first, second = trees(n)
    for tree in (first, second):
        assert sum(1 for up in tree.parent if up < 0) == 1
        assert len(tree.children[tree.root]) == (1 if n > 1 else 0)  # a root has one child
        assert all(len(c) <= 2 for c in tree.children)
        assert sorted(sum(tree.children, ())) == sorted(set(range(n)) - {tree.root})
        assert max(tree.depth) == tree.height[tree.root] <= max(1, math.ceil(math.log2(n)))
    assert first.parent == tuple(btree_parent(n, r) for r in range(n)) and first.root == 0
    if n % 2 == 0:  # mirror image
        assert all(second.parent[r] == (-1 if first.parent[n - 1 - r] < 0
                                        else n - 1 - first.parent[n - 1 - r]) for r in range(n))
        both = [r for r in range(n) if first.children[r] and second.children[r]]
        assert both == []  # no rank forwards in both trees
    else:  # shifted by one
        assert second.root == (1 if n > 1 else 0)
        assert all(second.parent[(r + 1) % n] == (-1 if first.parent[r] < 0
                                                  else (first.parent[r] + 1) % n)
                   for r in range(n))


def test_nccl_btree_examples() -> None:
    # the illustration in NCCL's trees.cc: 0 -> 8; 8 -> 4, 12; 4 -> 2, 6; 12 -> 10, 13 ...
    parents = [btree_parent(14, r) for r in range(14)]
    assert parents == [-1, 2, 4, 2, 8, 6, 4, 6, 0, 10, 12, 10, 8, 12]


def test_chain_broadcast_pipelines() -> None:
    s = build("ring", "broadcast", 5, 40, root=2, options={"chunks": 4})
    assert last_step(s) + 1 == 4 + 5 - 2
    assert all(len(st.sends) <= 1 and len(st.recvs) <= 1 for prog in s.programs
               for st in prog.steps)
    r = build("ring", "reduce", 5, 40, root=2, options={"chunks": 4})
    assert last_step(r) + 1 == 4 + 5 - 2 and scratch(r) == 10


def test_hierarchical_moves_a_shard_per_rank_across_nodes() -> None:
    layout = Layout.blocked(8, 4)  # two nodes of four
    s = build("hierarchical", "allreduce", 8, 64, layout=layout, options={"outer": "ring"})
    node = {r: k for k, ranks in enumerate(layout.nodes) for r in ranks}
    for r in range(8):
        across = sum(m.src.length for st in s.programs[r].steps for m in st.sends
                     if node[m.peer] != node[r])
        # a 16-element shard, ring allreduce over 2 nodes: 2 (P-1)/P * 16 elements
        assert across == 2 * (2 - 1) * 16 // 2


def test_hierarchical_reduce_scatter_packs_only_when_needed() -> None:
    def packing_steps(schedule) -> list:
        return [st for st in schedule.programs[0].steps
                if st.local and not st.sends and not st.recvs]

    # blocked: one local copy of the input into local-index-major order first
    packed = build("hierarchical", "reduce_scatter", 6, 4, layout=Layout.blocked(6, 3))
    (pack,) = packing_steps(packed)
    assert pack.index == 0 and len(pack.local) == 6
    # round robin is already in that order: no copy
    natural = build("hierarchical", "reduce_scatter", 6, 4, layout=Layout.round_robin(6, 2))
    assert packing_steps(natural) == []


def test_no_zero_length_messages_for_tiny_counts() -> None:
    for name, coll in (("rabenseifner", "allreduce"), ("recursive_halving", "reduce_scatter"),
                       ("ring", "allreduce"), ("double_binary_tree", "allreduce")):
        s = build(name, coll, 13, 3)
        for prog in s.programs:
            for st in prog.steps:
                assert all(m.src.length > 0 for m in st.sends)
                assert all(m.dst.length > 0 for m in st.recvs)


def test_count_zero_is_empty() -> None:
    for name, coll in (("ring", "allreduce"), ("bruck", "allgather"), ("tree", "reduce")):
        s = build(name, coll, 5, 0)
        assert all(prog.steps == () and prog.scratch_len == 0 for prog in s.programs)


def test_problem_validates_layouts() -> None:
    with pytest.raises(ValueError, match="exactly once"):
        Problem(Collective.ALLREDUCE, 3, 1, layout=Layout(((0, 0), (1,))))
    with pytest.raises(ValueError, match="exactly once"):
        Problem(Collective.ALLREDUCE, 2, 1, layout=Layout(((0, 1, 2),)))
    assert Layout.round_robin(6, 2).nodes == ((0, 2, 4), (1, 3, 5))
    assert get_algorithm("ring").schedule(Problem(Collective.ALLREDUCE, 2, 2)).programs[1].rank == 1


def test_slices_used_are_interned_but_equal() -> None:
    a = build("ring", "allgather", 3, 2)
    b = build("ring", "allgather", 3, 2)
    assert a == b
    assert a.programs[0].steps[0].sends[0].src.buf is Buf.INPUT


@pytest.mark.parametrize("g", list(range(1, 14)) + [16, 17])
def test_core_spans_cover_every_step(g: int) -> None:
    """Hierarchical phases are laid end to end by span: no core may step past its span."""
    from collbench.algorithms._build import INPUT, OUTPUT, Builder, Group, Partition
    from collbench.algorithms.hierarchical import ALLGATHER_CORES, ALLREDUCE_CORES, REDUCE_SCATTER_CORES
    from collbench.algorithms.ring import flat_units

    t0 = 5
    for n in (0, 1, g + 1, 37):
        for name, (core, span) in ALLREDUCE_CORES.items():
            for opts in ({}, {"chunks": 3}) if name == "double_binary_tree" else ({},):
                for me in range(g):
                    b = Builder(me)
                    core(b, Group(range(g), me), INPUT, OUTPUT, n, t0, 0, opts)
                    idx = [st.index for st in b.build().steps]
                    assert all(t0 <= i < t0 + span(g, n, opts) for i in idx), (name, g, n)
        part = Partition(n * g, g)
        for name, (core, span) in REDUCE_SCATTER_CORES.items():
            for me in range(g):
                b = Builder(me)
                core(b, Group(range(g), me), part, INPUT, OUTPUT, False, t0, 0)
                assert all(t0 <= st.index < t0 + span(g) for st in b.build().steps), name
        for name, (core, span) in ALLGATHER_CORES.items():
            for me in range(g):
                b = Builder(me)
                core(b, Group(range(g), me), part, OUTPUT, flat_units, INPUT.at(0, n), t0)
                assert all(t0 <= st.index < t0 + span(g) for st in b.build().steps), name


def test_reductions_accumulate_into_their_first_operand() -> None:
    """The IR lets ``a`` (not ``b``) be the destination; even in place the second operand never
    names the destination's memory."""
    from collbench.algorithms import Reduce, resolve_slice

    for name, coll in (("ring", "allreduce"), ("recursive_doubling", "allreduce"),
                       ("rabenseifner", "allreduce"), ("tree", "allreduce"),
                       ("double_binary_tree", "allreduce"), ("direct", "allreduce"),
                       ("recursive_halving", "reduce_scatter"), ("direct", "reduce_scatter"),
                       ("ring", "reduce_scatter"), ("ring", "reduce"), ("tree", "reduce"),
                       ("hierarchical", "allreduce")):
        for p in (3, 4, 6):
            layout = Layout.blocked(p, 2) if p % 2 == 0 and name == "hierarchical" else None
            s = build(name, coll, p, 2 * p + 1, layout=layout)
            for prog in s.programs:
                for st in prog.steps:
                    for op in st.local:
                        if isinstance(op, Reduce):
                            phys = [resolve_slice(s.problem, prog.rank, x, True)
                                    for x in (op.dst, op.b)]
                            assert phys[0] != phys[1], (name, coll, p, op)
