"""Every registered algorithm, verified symbolically at every rank count 1..64 (and 128, 1000
for the logarithmic ones), out of place and in place."""

from __future__ import annotations

import inspect

import pytest
from algo_cases import IMPLEMENTATIONS, impl_id

from collbench.algorithms import (
    Collective,
    Problem,
    default_counts,
    format_verify_report,
    get_algorithm,
    verify_algorithm,
    verify_all,
)
from collbench.algorithms.verify import _cases


def _assert_ok(report) -> None:
    assert report.entries, "nothing was verified"
    assert report.ok, format_verify_report(report)


def _sweep(pair, ranks: range, counts) -> None:
    algo, impl = pair
    report = verify_all(ranks.stop - 1, counts=counts, extra_ranks=(), algorithms=[algo.name],
                        collectives=[impl.collective])
    _assert_ok(report)
    assert report.entries[0].ranks == tuple(range(1, ranks.stop))


@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_every_rank_count_up_to_32(pair) -> None:
    """The whole spread of counts (0, 1, p-1, p, p+1, 10007) at every p in 1..32."""
    _sweep(pair, range(1, 33), None)


def _upper(p: int) -> list[int]:
    # 1..32 ran with every count above; from 33 on the counts that make empty blocks and
    # uneven blocks: 1, p-1, p+1 (the rest of the spread is test_the_rest_of_the_default_sweep)
    return [] if p <= 32 else [1, p - 1, p + 1]


def _rest(p: int) -> list[int]:
    return [] if p <= 32 else sorted(set(default_counts(p)) - set(_upper(p)))


# The algorithms with O(p^2) messages (ring, direct, hierarchical, chains) take seconds per
# implementation beyond 32 ranks: slow-marked (CI and --runslow run them).
@pytest.mark.parametrize("pair", [pair if pair[1].log_steps else
                                  pytest.param(pair, marks=pytest.mark.slow)
                                  for pair in IMPLEMENTATIONS], ids=impl_id)
def test_every_rank_count_up_to_64(pair) -> None:
    _sweep(pair, range(1, 65), _upper)


LOG = [pair for pair in IMPLEMENTATIONS if pair[1].log_steps]


@pytest.mark.parametrize("pair", LOG, ids=impl_id)
def test_logarithmic_algorithms_at_128_ranks(pair) -> None:
    algo, impl = pair
    _assert_ok(verify_all(0, extra_ranks=(128,), algorithms=[algo.name],
                          collectives=[impl.collective]))


# allgather at 1000 ranks moves a million distinct blocks per schedule: seconds each
_SLOW_AT_1000 = {("recursive_doubling", Collective.ALLGATHER), ("bruck", Collective.ALLGATHER)}


@pytest.mark.parametrize("pair", [
    pytest.param(pair, marks=pytest.mark.slow) if (pair[0].name, pair[1].collective)
    in _SLOW_AT_1000 else pair for pair in LOG], ids=impl_id)
def test_logarithmic_algorithms_at_1000_ranks(pair) -> None:
    algo, impl = pair
    _assert_ok(verify_all(0, extra_ranks=(1000,), algorithms=[algo.name],
                          collectives=[impl.collective]))


# Written out by hand, not derived from the registry: registering (or dropping) an
# implementation must be a deliberate change here too.
EXPECTED_IMPLEMENTATIONS = {
    "ring": {"allreduce", "allgather", "reduce_scatter", "broadcast", "reduce"},
    "recursive_doubling": {"allreduce", "allgather"},
    "rabenseifner": {"allreduce"},
    "recursive_halving": {"reduce_scatter"},
    "tree": {"allreduce", "broadcast", "reduce"},
    "double_binary_tree": {"allreduce"},
    "direct": {"allreduce", "allgather", "reduce_scatter", "alltoall", "alltoallv"},
    "bruck": {"allgather", "alltoall"},
    "hierarchical": {"allreduce", "allgather", "reduce_scatter", "alltoall", "alltoallv"},
    "pairwise": {"alltoall", "alltoallv"},
}


def test_every_registered_algorithm_is_covered_by_the_sweep() -> None:
    """Fails when an algorithm is registered without taking part in verification."""
    from collbench.algorithms import algorithms

    expected = {(name, Collective.parse(c)) for name, colls in EXPECTED_IMPLEMENTATIONS.items()
                for c in colls}
    registered = {(a.name, c) for a in algorithms() if not a.native
                  for c in a.implementations}
    assert registered == expected, (sorted((a, c.value) for a, c in registered - expected),
                                    sorted((a, c.value) for a, c in expected - registered))
    assert {(algo.name, impl.collective) for algo, impl in IMPLEMENTATIONS} == expected
    report = verify_all(3, extra_ranks=())
    swept = {(e.algorithm, e.collective) for e in report.entries}
    assert swept == registered
    for entry in report.entries:
        assert entry.schedules > 0 and entry.ranks == (1, 2, 3)
    _assert_ok(report)


def test_every_option_variant_is_swept() -> None:
    """The rotation of non-default options over rank counts reaches every variant."""
    for algo, impl in IMPLEMENTATIONS:
        seen = [dict(o) for p in range(1, 65) for o, _, _ in _cases(impl, p, False)]
        for variant in impl.verify_options:
            assert dict(variant) in seen, (algo.name, impl.collective, variant)


# `collbench verify --max-ranks 64` is the union of the sweeps above (every p up to 32 with every
# count, 33..64 split between _upper and _rest, 128 and 1000 for the logarithmic algorithms):
# each schedule is verified once, not once per test and again in a whole-registry sweep.
@pytest.mark.slow
@pytest.mark.parametrize("pair", IMPLEMENTATIONS, ids=impl_id)
def test_the_rest_of_the_default_sweep(pair) -> None:
    """The counts of the default spread that test_every_rank_count_up_to_64 leaves out."""
    _sweep(pair, range(1, 65), _rest)


def test_the_sweeps_add_up_to_the_default_sweep() -> None:
    for p in range(1, 65):
        upper, rest = set(_upper(p)), set(_rest(p))
        assert not upper & rest
        assert upper | rest == (set() if p <= 32 else set(default_counts(p)))
    # and the large rank counts of the default sweep are the 128 and 1000 tests
    assert inspect.signature(verify_all).parameters["extra_ranks"].default == (128, 1000)


def test_verify_algorithm_reports_both_placements_and_preconditions() -> None:
    problem = Problem(Collective.ALLREDUCE, 5, 11)
    assert verify_algorithm("halving_doubling", problem) == []
    bad = verify_algorithm("bruck", problem)
    assert len(bad) == 1 and bad[0].startswith(
        "precondition: bruck does not implement allreduce (it implements allgather"), bad
    with pytest.raises(ValueError, match="unknown algorithm"):
        verify_algorithm("nope", problem)


def test_report_formatting() -> None:
    report = verify_all(4, counts=[0, 5], extra_ranks=(), algorithms=["ring", "bruck"])
    text = format_verify_report(report)
    assert "ring" in text and "bruck" in text and "reduce_scatter" in text
    assert "1-4" in text
    assert text.rstrip().endswith("all correct")
    assert report.ok and report.schedules == sum(e.schedules for e in report.entries)


def test_report_names_a_failure(monkeypatch) -> None:
    """A broken generator shows up in the report with its problem and first errors."""
    from collbench.algorithms import Program, register, unregister

    def broken(problem, rank, options):
        return Program(rank, ())  # never writes the output

    register("test_broken", Collective.ALLGATHER, broken, description="broken on purpose")
    try:
        report = verify_all(2, counts=[3], extra_ranks=(), algorithms=["test_broken"])
    finally:
        unregister("test_broken")
    assert not report.ok
    text = format_verify_report(report)
    assert "test_broken allgather p=1 count=3" in text
    assert "rank 0: result out[0:3] is undefined" in text
    assert "FAILED" in text


def test_default_counts() -> None:
    assert default_counts(1) == [0, 1, 2, 10007]
    assert default_counts(8) == [0, 1, 7, 8, 9, 10007]
    assert get_algorithm("ring").name == "ring"
