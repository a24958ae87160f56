"""alltoallv: the count matrix (algorithms/vcounts.py), its descriptor, the schedules (pairwise,
direct, hierarchical) on the simulator and the verifier at p = 1..16 with several skews and
arbitrary matrices, validation's expected output, and the registered costs against the walk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from collbench.algorithms import Collective, Layout, Problem, get_algorithm, reference_result
from collbench.algorithms.collectives import descriptor
from collbench.algorithms.simulate import simulate
from collbench.algorithms.vcounts import Skew, count_of_lengths, counts, load_matrix, parse_exponent
from collbench.algorithms.verify import verify_both
from collbench.dtypes import DTYPES
from collbench.metrics import bus_factor, bytes_for_count, count_for_size
from collbench.validation import expected_output, make_input

V = Collective.ALLTOALLV
NAMES = ("pairwise", "direct", "hierarchical")


def _random_matrix(p: int, seed: int) -> Skew:
    """An arbitrary matrix with zeros, a hot column and a hot row (not symmetric)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 6, (p, p)) * (rng.random((p, p)) < 0.7)
    w[:, rng.integers(p)] += 9
    w[rng.integers(p)] += 4
    return Skew(weights=tuple(tuple(int(x) for x in row) for row in w), source=f"random{seed}")


def _skews(p: int) -> list[Skew | None]:
    return [None, Skew(0), Skew(2.5), _random_matrix(p, p)]


def _layout(name: str, p: int) -> Layout | None:
    """Hierarchical: about sqrt(p) ranks per node, round robin for odd p (nodes not runs)."""
    if name != "hierarchical":
        return None
    g = next((d for d in range(int(p ** 0.5), 0, -1) if p % d == 0), 1)
    return Layout.round_robin(p, p // g) if p % 2 else Layout.blocked(p, g)


def test_zipf_formula_and_the_size_convention():
    c = counts(Skew(1), 4, 12)
    assert c.matrix.tolist() == [[12, 6, 4, 3]] * 4          # floor(12 / (d+1)), never 3.999
    assert c.sdispls[2].tolist() == [0, 12, 18, 22] and c.rdispls[1].tolist() == [0, 6, 12, 18]
    assert c.recv_total.tolist() == [48, 24, 16, 12] and c.send_total.tolist() == [25] * 4
    assert counts(Skew(0), 3, 5).matrix.tolist() == [[5, 5, 5]] * 3   # s = 0: alltoall
    assert counts(Skew(64), 3, 5).matrix.tolist() == [[5, 0, 0]] * 3  # everything to the hot rank
    # the sweep's size is the busiest rank's receive buffer, exactly alltoall's whole buffer
    for p in (1, 3, 8):
        count = count_for_size(V, 1 << 12, 4, p)
        assert count == count_for_size(Collective.ALLTOALL, 1 << 12, 4, p)
        for skew in (Skew(1), Skew(0.5), _random_matrix(p, 3)):
            c = counts(skew, p, count)
            busiest = max(c.send_total.max(), c.recv_total.max())
            assert busiest <= p * count and bytes_for_count(V, count, 4, p) == p * count * 4
            if skew.weights is None:
                assert busiest == p * count
    assert bus_factor(V, 4) == 0.75


def test_matrix_scaling_and_count_inversion():
    skew = Skew(weights=((0, 2, 1), (1, 0, 0), (3, 0, 1)))   # largest row/column sum: 4
    assert counts(skew, 3, 8).matrix.tolist() == [[0, 12, 6], [6, 0, 0], [18, 0, 6]]
    assert skew.reason(4) == "the count matrix is 3 x 3 but the job has 4 ranks"
    with pytest.raises(ValueError, match="3 x 3 but the job has 2"):
        Problem(V, 2, 1, skew=skew)
    with pytest.raises(ValueError, match="describes alltoallv"):
        Problem(Collective.ALLTOALL, 3, 1, skew=Skew(1))
    for s in (None, Skew(2), skew):
        for count in (0, 1, 5, 97):
            c = counts(s or Skew(), 3, count)
            assert count_of_lengths(c.send_total.tolist(), s) == count or \
                counts(s or Skew(), 3, count_of_lengths(c.send_total.tolist(), s)).matrix.tolist() \
                == c.matrix.tolist()


def test_parsing_refuses_bad_values(tmp_path):
    assert parse_exponent("1.5") == Skew(1.5) and parse_exponent("zipf:0") == Skew(0)
    for bad in ("x", "-1", "nan", "65"):
        with pytest.raises(ValueError, match="skew="):
            parse_exponent(bad)
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"counts": [[1, 2], [0, 3]]}))
    assert load_matrix(str(good)) == Skew(weights=((1, 2), (0, 3)), source="m.json")
    for text, why in (("[[1, 2], [3]]", "square"), ("[[1, -2], [0, 1]]", "non-negative"),
                      ("[[0, 0], [0, 0]]", "positive entry"), ("{", "not JSON"),
                      ('{"x": 1}', "list of rows")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=why):
            load_matrix(str(bad))
    with pytest.raises(ValueError, match="cannot read"):
        load_matrix(str(tmp_path / "missing.json"))


def test_descriptor_postcondition_lengths_and_inplace_host():
    skew = _random_matrix(5, 1)
    problem = Problem(V, 5, 7, skew=skew)
    c = counts(skew, 5, 7)
    desc = descriptor(V)
    for r in range(5):
        blocks = desc.blocks(problem, r)
        assert [b.length for b in blocks] == c.matrix[:, r].tolist()
        assert [b.in_offset for b in blocks] == c.sdispls[:, r].tolist()
        assert sum(b.length for b in blocks) == problem.output_len(r) == c.recv_total[r]
        assert problem.input_len(r) == c.send_total[r]
        host, offset = desc.inplace(problem, r)
        assert offset == 0 and (host.value == "out") == (c.recv_total[r] >= c.send_total[r])


@pytest.mark.parametrize("name", NAMES)
def test_simulator_every_rank_count_up_to_16_several_skews(name):
    """Both placements, against the reference computed from the descriptor."""
    for p in range(1, 17):  # every skew and two counts up to 8 ranks, then an arbitrary matrix
        for skew in _skews(p) if p <= 8 else _skews(p)[3:]:
            for count in (1, 2 * p + 3) if p <= 8 else (2 * p + 3,):
                problem = Problem(V, p, count, layout=_layout(name, p), skew=skew)
                schedule = get_algorithm(name).schedule(problem)
                inputs = [np.arange(problem.input_len(r), dtype=np.int64) + 1000 * r
                          for r in range(p)]
                want = reference_result(V, inputs, "sum", skew=skew)
                for in_place in (False, True):
                    got = simulate(schedule, inputs, "sum", in_place=in_place)
                    for r in range(p):
                        assert np.array_equal(got[r], want[r]), (name, p, count, skew, in_place, r)


@pytest.mark.parametrize("name", NAMES)
def test_verifier_proves_both_placements(name):
    """The existing verifier, through the descriptor: no zero-length message, no hazard, every
    block where it belongs, at small rank counts with every skew and at 16 ranks."""
    cases = [(p, s) for p in range(1, 9) for s in _skews(p)] + [(13, Skew(1)), (16, _random_matrix(16, 7))]
    for p, skew in cases:
        for count in (0, 1, p + 1):
            problem = Problem(V, p, count, layout=_layout(name, p), skew=skew)
            oop, inp = verify_both(get_algorithm(name).schedule(problem))
            assert not oop and not inp, (name, p, count, skew, oop[:3], inp[:3])


def test_hierarchical_needs_equal_nodes():
    problem = Problem(V, 5, 3, layout=Layout.blocked(5, 2))
    assert "hierarchical alltoallv needs the same number of ranks" in \
        get_algorithm("hierarchical").precondition(problem)


def test_validation_expects_each_sources_block_at_its_displacement():
    p, count, skew = 4, 9, _random_matrix(4, 5)
    c = counts(skew, p, count)
    for dtype in (DTYPES["int8"], DTYPES["bfloat16"], DTYPES["float64"]):
        inputs = [make_input(V, dtype, None, p, q, int(c.send_total[q]), seed=3) for q in range(p)]
        want = reference_result(V, inputs, "sum", skew=skew)
        for r in range(p):
            got = expected_output(V, dtype, None, p, r, count, seed=3, skew=skew)
            assert got.view(np.uint8).tobytes() == want[r].view(np.uint8).tobytes()


def test_registered_costs_equal_the_schedule_walk_with_skews():
    from collbench.analysis.model.cost import Link, Machine, Phase, total
    from collbench.analysis.model.forms import phases
    from collbench.analysis.model.walk import step_signatures

    machine = Machine(Link(1e-6, 1e-9, 1), Link(5e-6, 4e-9), nics=1, gamma=3e-10, delta=2e-10)
    for name in NAMES:
        for p in (3, 6):
            for skew in (Skew(2.5), _random_matrix(p, 11)):
                layouts = [None, Layout.blocked(p, 2 if p % 2 == 0 else 3)] if name != "hierarchical" \
                    else [_layout(name, p), Layout.blocked(p, 2 if p % 2 == 0 else 3)]
                for layout in layouts:
                    problem = Problem(V, p, 13, layout=layout, skew=skew)
                    for in_place in (False, True):
                        closed = phases(name, problem, 4, in_place)
                        walked = [Phase(1, sigs) for _, sigs in
                                  step_signatures(name, problem, 4, in_place, None)]
                        assert closed is not None
                        assert total(closed, machine).total == pytest.approx(
                            total(walked, machine).total, rel=1e-12), (name, p, skew, layout, in_place)
