"""The README's "write your own algorithm" example must work as printed."""

import re
from pathlib import Path

import pytest

from collbench.algorithms import Collective, Problem
from collbench.algorithms.registry import unregister
from collbench.algorithms.simulate import reference_result, simulate
from collbench.algorithms.verify import verify_algorithm

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def star():
    text = README.read_text()
    code = re.search(r"```python\n# algorithms/star.py\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README star example", "exec"), namespace)  # noqa: S102 - our own README
    yield namespace
    unregister("star")


@pytest.mark.parametrize("nranks", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("count", [0, 1, 7, 100])
def test_readme_algorithm_verifies(star, nranks, count):
    assert verify_algorithm("star", Problem(Collective.ALLREDUCE, nranks, count)) == []


def test_readme_algorithm_simulates(star):
    import numpy as np

    from collbench.algorithms.registry import get_algorithm

    problem = Problem(Collective.ALLREDUCE, 4, 10)
    inputs = [np.arange(10, dtype=np.int64) * (r + 1) for r in range(4)]
    outputs = simulate(get_algorithm("star").schedule(problem), inputs, "sum")
    for got, want in zip(outputs, reference_result(Collective.ALLREDUCE, inputs, "sum")):
        assert np.array_equal(got, want)
