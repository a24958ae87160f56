"""Suite-wide pytest hooks: the ``slow`` marker, and MPI/Slurm jobs one at a time under xdist.

Slow tests (the full verification sweep, the validation patterns at 16384 ranks, ...) are
skipped on a laptop and run on CI (``CI=true``, which ``.ci/run`` sets), with ``--runslow``,
with ``COLLBENCH_SLOW=1``, or when ``-m`` selects them.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture, one cluster for all)

from cbtest import IN_CI, one_job_at_a_time

# Marks of tests that launch jobs. Under pytest-xdist (`-n`, see pyproject's addopts) they share
# one group, so the Slurm tests start the local cluster in one worker only, and they hold the job
# lock while they run (cbtest.one_job_at_a_time), so no two MPI jobs ever overlap.
_JOB_MARKS = ("mpi", "slurm")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run the tests marked slow (CI=true does too)")


def _run_slow(config: pytest.Config) -> bool:
    return (config.getoption("--runslow") or IN_CI or os.environ.get("COLLBENCH_SLOW") == "1"
            or "slow" in (config.option.markexpr or ""))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(m) for m in _JOB_MARKS):
            item.add_marker(pytest.mark.xdist_group("jobs"))
    if _run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow: runs on CI, or with --runslow / COLLBENCH_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_job_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    if any(request.node.get_closest_marker(m) for m in _JOB_MARKS):
        with one_job_at_a_time():
            yield
    else:
        yield
