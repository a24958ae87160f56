"""Fixtures shared by the whole suite (helpers live in cbtest.py, importable everywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def results_path(tmp_path: Path) -> Path:
    return tmp_path / "out.jsonl"
