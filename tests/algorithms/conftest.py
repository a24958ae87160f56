"""Fixtures for the pure algorithm tests (no MPI, no GPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest



def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the slow algorithm tests unless asked for: COLLBENCH_SLOW=1 or ``-m slow``."""
    if os.environ.get("COLLBENCH_SLOW") == "1" or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: set COLLBENCH_SLOW=1 or select with -m slow")
    here = Path(__file__).parent
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)
