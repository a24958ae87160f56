"""A live progress line on rank 0, only on a terminal and only for sweeps that take a while."""

from __future__ import annotations

import os
import sys
import time

from ..sizes import format_bytes
from .launcher import TTY_MARKER
from .watchdog import Activity

_SHOW_AFTER_SECONDS = 2.0


class Progress:
    """Writes ``[done/total] what`` to stderr with a carriage return; silent in logs."""

    def __init__(self, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = os.environ.get(TTY_MARKER) == "1" or sys.stderr.isatty()
        self.enabled = enabled
        self._start = time.monotonic()
        self._shown = False

    def update(self, done: int, total: int, activity: Activity) -> None:
        if not self.enabled or time.monotonic() - self._start < _SHOW_AFTER_SECONDS:
            return
        size = format_bytes(activity.size) if activity.size is not None else ""
        text = (f"[{done + 1}/{total}] {activity.collective} {activity.algorithm} {activity.dtype} "
                f"{activity.op or ''} {size} {activity.placement}")
        sys.stderr.write("\r\x1b[K" + text[:120])
        sys.stderr.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the live line before regular output is printed."""
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False
