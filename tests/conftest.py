"""Suite-wide pytest hooks: the ``slow`` marker.

Slow tests (the full verification sweep, the validation patterns at 16384 ranks, ...) are
skipped on a laptop and run on CI (``CI=true``, which ``.ci/run`` sets), with ``--runslow``,
with ``COLLBENCH_SLOW=1``, or when ``-m`` selects them.
"""

from __future__ import annotations

import os

import pytest

from cbtest import IN_CI


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run the tests marked slow (CI=true does too)")


def _run_slow(config: pytest.Config) -> bool:
    return (config.getoption("--runslow") or IN_CI or os.environ.get("COLLBENCH_SLOW") == "1"
            or "slow" in (config.option.markexpr or ""))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow: runs on CI, or with --runslow / COLLBENCH_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
