"""Names, aliases, the reserved ``native``, preconditions and registering a new algorithm."""

from __future__ import annotations

import pytest
from algo_cases import IMPLEMENTATIONS

from collbench.algorithms import (
    NATIVE,
    Buf,
    Collective,
    Layout,
    Problem,
    Program,
    Slice,
    algorithms,
    algorithms_for,
    get_algorithm,
    known_names,
    register,
    unregister,
    verify_all,
)
from collbench.algorithms._build import OUTPUT, Builder

ISSUE_NAMES = {"ring", "recursive_doubling", "rabenseifner", "halving_doubling", "tree",
               "double_binary_tree", "direct", "hierarchical", "bruck", "recursive_halving",
               "native"}


def test_every_cli_name_resolves() -> None:
    for name in ISSUE_NAMES:
        assert get_algorithm(name).name in known_names()
    assert get_algorithm("halving_doubling").name == "rabenseifner"
    assert get_algorithm("Recursive-Doubling").name == "recursive_doubling"
    assert get_algorithm("binomial").name == "tree"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        get_algorithm("butterfly")
    message = str(info.value)
    assert "unknown algorithm 'butterfly'" in message
    for name in known_names():
        assert name in message
    assert "halving_doubling -> rabenseifner" in message


def test_required_collectives_are_implemented() -> None:
    want = {
        Collective.ALLREDUCE: {"ring", "recursive_doubling", "rabenseifner", "tree",
                               "double_binary_tree", "direct", "hierarchical"},
        Collective.ALLGATHER: {"ring", "recursive_doubling", "bruck", "direct", "hierarchical"},
        Collective.REDUCE_SCATTER: {"ring", "recursive_halving", "direct", "hierarchical"},
        Collective.BROADCAST: {"tree", "ring"},
        Collective.REDUCE: {"tree", "ring"},
    }
    for coll, names in want.items():
        have = {a.name for a in algorithms_for(coll, include_native=False)}
        assert names <= have, (coll, names - have)
        assert algorithms_for(coll)[-1].name == NATIVE
        assert algorithms_for(coll.value, include_native=False)[0].name == "ring"


def test_native_is_reserved_and_has_no_schedule() -> None:
    native = get_algorithm("native")
    assert native.native and set(native.collectives) == set(Collective)
    problem = Problem(Collective.ALLREDUCE, 4, 8)
    assert native.precondition(problem, op="sum") is None
    with pytest.raises(ValueError, match="library's own collective"):
        native.program(problem, 0)
    with pytest.raises(ValueError, match="reserved"):
        register("native", Collective.ALLREDUCE, lambda p, r, o: None, description="x")
    assert known_names()[-1] == NATIVE


def test_preconditions_are_precise() -> None:
    ar = Problem(Collective.ALLREDUCE, 4, 8)
    assert get_algorithm("tree").precondition(Problem(Collective.ALLGATHER, 4, 8)) == \
        "tree does not implement allgather (it implements allreduce, broadcast, reduce)"
    assert get_algorithm("ring").precondition(ar, op="xor") == \
        "unknown reduction op 'xor' (known: sum, prod, max, min, avg)"
    assert get_algorithm("ring").precondition(ar, options={"chunks": 2}) == \
        "ring allreduce: unknown option 'chunks' (accepted: channels)"
    assert get_algorithm("double_binary_tree").precondition(ar, options={"chunks": 0}) == \
        "chunks must be a whole number from 1 to 1024 (got 0)"
    assert get_algorithm("ring").precondition(Problem(Collective.BROADCAST, 4, 8),
                                              options={"chunks": 10**8}) == \
        "chunks must be a whole number from 1 to 1024 (got 100000000)"
    assert get_algorithm("hierarchical").precondition(ar, options={"outer": "bruck"}) == (
        "hierarchical allreduce: unknown outer algorithm 'bruck' (known: ring, "
        "recursive_doubling, rabenseifner, tree, double_binary_tree, direct)")
    assert get_algorithm("hierarchical").precondition(ar, options={"inner": "tree"}).startswith(
        "hierarchical: unknown inner algorithm 'tree'")
    hier = get_algorithm("hierarchical")
    assert hier.precondition(ar, options={"outer": "ring", "outer_options": {"chunks": 2}}) == (
        "hierarchical: outer algorithm ring does not take option 'chunks' (accepted: channels)")
    assert hier.precondition(ar, options={"outer": "double_binary_tree",
                                          "outer_options": {"chunks": 0}}) == \
        "hierarchical: outer chunks must be a positive integer (got 0)"
    uneven = Problem(Collective.ALLGATHER, 5, 3, layout=Layout.blocked(5, 2))
    assert get_algorithm("hierarchical").precondition(uneven) == (
        "hierarchical needs the same number of ranks on every node; the layout has 3 nodes "
        "holding 2, 2, 1 ranks")
    # ops do not matter for data movement; every built-in op is fine for reductions
    ag = Problem(Collective.ALLGATHER, 4, 8)
    assert get_algorithm("ring").precondition(ag, op="xor") is None
    for op in ("sum", "prod", "max", "min", "avg"):
        assert get_algorithm("rabenseifner").precondition(ar, op=op) is None
    # no count or rank-count restrictions anywhere: tiny counts degrade gracefully
    for p in (1, 3, 7, 12):
        for algo, impl in IMPLEMENTATIONS:
            problem = Problem(impl.collective, p, 1)
            assert algo.precondition(problem) is None, (algo.name, impl.collective, p)


def test_program_refuses_what_the_precondition_refuses() -> None:
    with pytest.raises(ValueError, match="does not implement"):
        get_algorithm("bruck").program(Problem(Collective.ALLREDUCE, 2, 2), 0)
    with pytest.raises(ValueError, match="rank 5 is outside 0..3"):
        get_algorithm("ring").program(Problem(Collective.ALLREDUCE, 4, 2), 5)


def test_program_of_one_rank_equals_the_schedule_entry() -> None:
    for algo, impl in IMPLEMENTATIONS:
        problem = Problem(impl.collective, 6, 13, 5 if impl.collective.rooted else 0,
                          Layout.blocked(6, 3) if impl.verify_layouts else None)
        schedule = algo.schedule(problem)
        for r in (0, 3, 5):
            assert algo.program(problem, r) == schedule.programs[r]


def test_defaults_are_filled_in() -> None:
    seen = {}

    def spy(problem, rank, options):
        seen.update(options)
        return get_algorithm("ring").program(problem, rank)

    register("test_spy", Collective.BROADCAST, spy, description="spy",
             defaults={"chunks": None, "fanout": 2})
    try:
        get_algorithm("test_spy").program(Problem(Collective.BROADCAST, 2, 4), 0, {"fanout": 3})
    finally:
        unregister("test_spy")
    assert seen == {"chunks": None, "fanout": 3}


# -- a student's algorithm: one generator + one register call ---------------------------------

def _student_allgather(problem: Problem, rank: int, options) -> Program:
    """Everyone sends its block straight to everyone (a hand-written direct allgather)."""
    p, count = problem.nranks, problem.count
    b = Builder(rank)  # drops empty messages, tracks scratch, sorts steps
    mine = Slice(Buf.INPUT, 0, count)
    b.copy(0, mine, OUTPUT.at(rank * count, count))
    for peer in range(p):
        if peer != rank:
            b.send(0, peer, mine)
            b.recv(0, peer, OUTPUT.at(peer * count, count))
    return b.build()


def test_a_student_algorithm_is_registered_and_verified() -> None:
    algo = register("student_direct", Collective.ALLGATHER, _student_allgather,
                    description="hand-written direct allgather", aliases=("student",))
    try:
        assert get_algorithm("student").name == "student_direct"
        assert algo in algorithms() and algo in algorithms_for("allgather")
        report = verify_all(9, extra_ranks=(), algorithms=["student_direct"])
        assert report.ok and report.entries[0].ranks == tuple(range(1, 10))
        with pytest.raises(ValueError, match="already implements allgather"):
            register("student_direct", Collective.ALLGATHER, _student_allgather,
                     description="again")
    finally:
        unregister("student_direct")
    with pytest.raises(ValueError, match="unknown algorithm"):
        get_algorithm("student")


def test_alias_clashes_are_refused() -> None:
    with pytest.raises(ValueError, match="already a name"):
        register("test_clash", Collective.ALLGATHER, _student_allgather, description="x",
                 aliases=("ring",))
    with pytest.raises(ValueError, match="already an alias"):
        register("halving_doubling", Collective.ALLGATHER, _student_allgather, description="x")
    assert "test_clash" not in known_names()
