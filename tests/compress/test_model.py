"""The cost model of the compressed allreduces (collbench/analysis/model/compressed.py) and
`collbench model predict --compressed`."""

from __future__ import annotations

import json

import pytest

from cbtest import run_cli
from collbench.algorithms import Collective
from collbench.analysis.model.compressed import NAMES, CompressedModel, Setting, crossovers
from collbench.analysis.model.profile import load_profile


@pytest.fixture(scope="module")
def model() -> CompressedModel:
    return CompressedModel(load_profile("perlmutter"), ranks_per_node=4)


def test_costs_grow_with_what_is_kept(model) -> None:
    n = 1 << 24
    for name, field, values in (("topk_allgather", "density", (0.001, 0.01, 0.1)),
                                ("topk_rd", "density", (0.001, 0.01, 0.1)),
                                ("gtopk", "density", (0.001, 0.01, 0.1)),
                                ("quant_ring", "bits", (2, 4, 8)),
                                ("quant_oneshot", "bits", (2, 4, 8)),
                                ("powersgd", "rank", (1, 4, 32))):
        times = [model.cost(name, 32, n, 4, Setting(**{field: v})).total for v in values]
        assert times == sorted(times) and times[0] < times[-1], (name, times)


def test_quantized_bytes_are_the_packed_bytes(model) -> None:
    """quant_ring moves what a dense ring moves, at (1 + 4/block)/itemsize of the bytes."""
    n, p = 1 << 26, 4
    dense = model._registry(Collective.ALLREDUCE, "ring", p, n, 4)
    quant = model.cost("quant_ring", p, n, 4, Setting(bits=8, block=256))
    assert quant.beta / dense.beta == pytest.approx((1 + 4 / 256) / 4, rel=0.02)


def test_one_rank_sends_nothing(model) -> None:
    for name in NAMES:
        cost = model.cost(name, 1, 1 << 20)
        assert cost.alpha == 0 and cost.beta == 0 and cost.local > 0, name


def test_crossovers_shrink_with_scale() -> None:
    rows = crossovers(load_profile("delta"), [1, 16], 4, [1 << 26])
    one, many = rows
    assert one.dense_us < many.dense_us
    assert many.limits["topk_allgather"] < one.limits["topk_allgather"]   # the allgather grows with p
    assert all(v is None or v > 0 for v in many.limits.values())


def test_cli(tmp_path) -> None:
    result = run_cli(["model", "predict", "--compressed", "--profile", "perlmutter", "--nodes", "1,8",
                      "--sizes", "64M", "--format", "json"])
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["nodes"] for r in records] == [1, 8]
    assert set(records[0]["limits"]) == set(NAMES) and records[0]["dense_algorithm"]
    text = run_cli(["model", "predict", "--compressed", "--profile", "delta", "--sizes", "16M"])
    assert text.returncode == 0 and "topk_rd" in text.stdout and "best dense" in text.stdout
    bad = run_cli(["model", "predict", "--compressed", "--collective", "allgather"])
    assert bad.returncode == 2 and "--compressed models the compressed allreduces" in bad.stderr
