"""A Chrome trace (JSON object format) checker: what Chrome's and Perfetto's importers need.

Every event has ``name`` (str), ``ph`` (str), ``pid`` and ``tid`` (int); every event but
metadata (``M``) has a numeric ``ts`` >= 0; ``X`` slices a numeric ``dur`` >= 0; flow events
(``s``/``f``) an ``id``; each track's (pid, tid) timestamps never go back; every flow that
finishes has started. Returns the problems (empty: valid).
"""

from __future__ import annotations

from typing import Any

PHASES = {"X", "B", "E", "i", "I", "M", "s", "t", "f", "C"}


def problems(doc: Any) -> list[str]:
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents list"]
    out: list[str] = []
    last: dict[tuple[int, int], float] = {}
    started: set[Any] = set()
    for k, e in enumerate(doc["traceEvents"]):
        where = f"event {k}"
        if not isinstance(e, dict):
            out.append(f"{where}: not an object")
            continue
        if not isinstance(e.get("name"), str) or e.get("ph") not in PHASES:
            out.append(f"{where}: name must be a string and ph one of {sorted(PHASES)}")
        if not all(isinstance(e.get(key), int) and not isinstance(e.get(key), bool) for key in ("pid", "tid")):
            out.append(f"{where}: pid and tid must be integers")
            continue
        if e["ph"] == "M":
            continue
        ts = e.get("ts")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or ts < 0:
            out.append(f"{where}: ts must be a number >= 0")
            continue
        track = (e["pid"], e["tid"])
        if ts < last.get(track, 0.0):
            out.append(f"{where}: ts {ts} goes back on track {track} (after {last[track]})")
        last[track] = ts
        if e["ph"] == "X":
            dur = e.get("dur")
            if not isinstance(dur, (int, float)) or isinstance(dur, bool) or dur < 0:
                out.append(f"{where}: an X slice needs dur >= 0")
        if e["ph"] in ("s", "t", "f"):
            if "id" not in e:
                out.append(f"{where}: a flow event needs an id")
            elif e["ph"] == "s":
                started.add(e["id"])
            elif e["id"] not in started:
                out.append(f"{where}: flow {e['id']} ends before it starts")
    return out
