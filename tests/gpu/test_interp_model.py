"""``collbench model predict``: the schedule interpreter as a second execution choice, priced with
the profile's ``interp.step_us`` (measured only on one GPU, which is no node's constant; these tests use a
made-up value), and absent, with every output unchanged, from profiles without it."""

from __future__ import annotations

import dataclasses

import pytest

from collbench.algorithms import Collective
from collbench.analysis.model.predict import (
    INTERP_SUFFIX,
    Model,
    format_predictions,
    interp_model,
    interp_step_us,
    predict_tables,
)
from collbench.analysis.model.profile import load_profile
from collbench.errors import UsageError

STEP_US = 1.5  # hypothetical: the real constant comes from scripts/gpu_kernels_check.py on a GPU


def _with_step(profile, value):
    return dataclasses.replace(profile, record={**profile.record, "interp": {"step_us": value}})


def test_profiles_without_the_constant_show_no_interpreter_column() -> None:
    profile = load_profile("dgx-a100")
    assert interp_step_us(profile) is None and interp_model(Model(profile)) is None
    tables = predict_tables(Model(profile), Collective.ALLREDUCE, [1, 2], 8, [8, 1 << 20], ["ring", "hierarchical"])
    assert all(not name.endswith(INTERP_SUFFIX) for t in tables for name in t.algorithms)
    assert INTERP_SUFFIX not in format_predictions(tables, profile, Collective.ALLREDUCE, "float32")


def test_the_interpreter_replaces_the_intra_node_step_cost_only() -> None:
    base = load_profile("dgx-a100")
    profile = _with_step(base, STEP_US)
    [one, two] = predict_tables(Model(profile), Collective.ALLREDUCE, [1, 2], 8, [8, 1 << 24], ["ring", "hierarchical"])
    nccl, ours = one.cells[8]["ring"], one.cells[8]["ring" + INTERP_SUFFIX]
    # one node, ring allreduce: 2(p-1) steps, each the intra α on NCCL and step_us on the interpreter
    steps = 2 * (8 - 1)
    assert nccl.time_us - ours.time_us == pytest.approx(steps * (base.intra.alpha_us - STEP_US))
    assert ours.method.endswith("on cuda-interp") and ours.algorithm == "ring" + INTERP_SUFFIX
    # bandwidth terms are the same links
    big_nccl, big_ours = one.cells[1 << 24]["ring"], one.cells[1 << 24]["ring" + INTERP_SUFFIX]
    assert big_nccl.cost.beta == pytest.approx(big_ours.cost.beta)
    # across nodes the ring's steps wait for the inter-node hop (NCCL): nothing to gain there,
    # while hierarchical's intra-node phases get cheaper
    assert two.cells[8]["ring" + INTERP_SUFFIX].time_us == pytest.approx(two.cells[8]["ring"].time_us)
    assert two.cells[8]["hierarchical" + INTERP_SUFFIX].time_us < two.cells[8]["hierarchical"].time_us
    # the fastest choice can be the interpreter, and the JSON marks exactly one best per size
    text = format_predictions([one], profile, Collective.ALLREDUCE, "float32", "json")
    import json

    records = json.loads(text)
    for size in {r["bytes"] for r in records}:
        assert sum(r["best"] for r in records if r["bytes"] == size) == 1
    assert any(r["best"] and r["algorithm"].endswith(INTERP_SUFFIX) for r in records)


def test_more_than_eight_ranks_per_node_has_no_interpreter_column() -> None:
    profile = _with_step(load_profile("dgx-a100"), STEP_US)
    [table] = predict_tables(Model(profile), Collective.ALLREDUCE, [1], 16, [8], ["ring"])
    assert table.algorithms == ["ring"]


def test_a_bad_constant_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="interp.step_us"):
        interp_step_us(_with_step(load_profile("generic"), "fast"))
