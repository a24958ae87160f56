"""The trace file: Chrome trace / Perfetto JSON (``traceEvents``) plus collbench's own record.

One track per rank (pid = tid = rank). Per traced operation and rank: one slice for the
operation, one per step (``step K``), and inside each step its phases: ``post`` (posting the
sends and receives), ``wait`` (until every message of the step completed), then ``reduce``,
``copy`` or ``finalize`` (local work). Every message is a flow arrow (``s`` at the sender's
step start, ``f`` at the end of the receiver's wait). Times are rank 0's clock: each rank's
stamps minus its offset (:mod:`.clock`), in µs from the first stamp of the file.

The ``collbench`` key keeps the raw record (stamps, offsets, what each step moves, the row's
measured time) that ``trace show``/``compare`` and the timeline plot read; Chrome and
Perfetto ignore it.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import UsageError
from ..sizes import format_bytes

VERSION = 1
FINALIZE_STEP = -1  # index of avg's final division, executed as a step of its own
CLOCK = "CLOCK_MONOTONIC (clock_gettime in C, perf_counter_ns in Python), aligned to rank 0"


def local_phase(step: dict[str, Any]) -> str:
    if step["index"] == FINALIZE_STEP:
        return "finalize"
    return "reduce" if step["reduce_bytes"] else "copy"


def aligned(record: dict[str, Any], m: dict[str, Any]) -> Iterator[tuple[int, int, list[list[int]]]]:
    """(rank, iteration, per-step [post, posted, completed, done] in rank 0's ns) of one
    measurement."""
    offsets = record.get("offsets_ns") or []
    for entry in m["ranks"]:
        rank = entry["rank"]
        off = offsets[rank] if rank < len(offsets) else 0
        for i, steps in enumerate(entry["stamps_ns"]):
            yield rank, i, [[t - off for t in stamp] for stamp in steps]


def _origin(record: dict[str, Any]) -> int:
    firsts = [steps[0][0] for m in record["measurements"] for _, _, steps in aligned(record, m) if steps]
    return min(firsts, default=0)


def label(m: dict[str, Any]) -> str:
    return f"{m['collective']} {m['algorithm']} {format_bytes(m['bytes'])} {m['placement'].replace('_', '-')}"


def events(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``traceEvents`` of a record, sorted by time (so each track is monotonic)."""
    t0 = _origin(record)

    def us(ns: int) -> float:
        return (ns - t0) / 1000.0

    out: list[dict[str, Any]] = []
    for rank in range(record["nranks"]):
        out.append({"name": "process_name", "ph": "M", "pid": rank, "tid": rank, "args": {"name": f"rank {rank}"}})
        out.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": rank, "args": {"name": f"rank {rank}"}})
    flow_id = 0
    slices: list[dict[str, Any]] = []
    for mi, m in enumerate(record["measurements"]):
        stamps = {(rank, i): steps for rank, i, steps in aligned(record, m)}
        desc = {entry["rank"]: entry["steps"] for entry in m["ranks"]}
        for (rank, i), steps in stamps.items():
            if not steps:
                continue
            base = {"pid": rank, "tid": rank}
            slices.append({**base, "name": f"{label(m)} #{i}", "cat": "operation", "ph": "X",
                           "ts": us(steps[0][0]), "dur": (steps[-1][3] - steps[0][0]) / 1000.0,
                           "args": {"measurement": mi, "iteration": i}})
            for step, (a, b, c, d) in zip(desc[rank], steps):
                sent = sum(n for _, n in step["sends"])
                name = "finalize" if step["index"] == FINALIZE_STEP else f"step {step['index']}"
                slices.append({**base, "name": name, "cat": "step", "ph": "X", "ts": us(a),
                               "dur": (d - a) / 1000.0,
                               "args": {"measurement": mi, "iteration": i, "step": step["index"],
                                        "bytes_sent": sent, "bytes_received": sum(n for _, n in step["recvs"]),
                                        "peers": sorted({p for p, _ in step["sends"] + step["recvs"]})}})
                phases = [("post", a, b)]
                if step["sends"] or step["recvs"]:
                    phases.append(("wait", b, c))
                if step["reduce_bytes"] or step["copy_bytes"] or step["index"] == FINALIZE_STEP:
                    phases.append((local_phase(step), c, d))
                for pname, start, end in phases:
                    slices.append({**base, "name": pname, "cat": "phase", "ph": "X", "ts": us(start),
                                   "dur": (end - start) / 1000.0, "args": {}})
                # one arrow per message: from the sender's post to the receiver's completion
                for peer, nbytes in step["sends"]:
                    theirs = _matching(desc.get(peer, []), stamps.get((peer, i), []), step["index"])
                    if theirs is None:
                        continue
                    flow_id += 1
                    common = {"name": "message", "cat": "message", "id": flow_id}
                    slices.append({**common, **base, "ph": "s", "ts": us(a), "args": {"bytes": nbytes}})
                    slices.append({**common, "pid": peer, "tid": peer, "ph": "f", "bp": "e",
                                   # never before its start: clock alignment is only ±RTT/2
                                   "ts": max(us(theirs[2]), us(a)), "args": {"bytes": nbytes}})
    # by time; at equal times the longer slice first (a parent before its children)
    slices.sort(key=lambda e: (e["ts"], -e.get("dur", 0.0)))
    return out + slices


def _matching(steps: list[dict[str, Any]], stamps: list[list[int]], index: int) -> list[int] | None:
    for step, stamp in zip(steps, stamps):
        if step["index"] == index:
            return stamp
    return None


def document(record: dict[str, Any]) -> dict[str, Any]:
    record = {"version": VERSION, "clock": CLOCK, **record}
    return {"traceEvents": events(record), "displayTimeUnit": "ns",
            "otherData": {"generator": "collbench trace", "clock": CLOCK,
                          "offsets_ns": record.get("offsets_ns"),
                          "offset_bound_ns": record.get("offset_bound_ns")},
            "collbench": record}


def create(path: Path, record: dict[str, Any]) -> None:
    """Create the trace file, holding ``record``; never over an existing file.

    The file is opened exclusively (``O_EXCL``), so that an existing file, or one another run
    made since the command line was checked, is refused however the ranks were started (by
    ``collbench run`` or by mpiexec/srun directly, which skip the launcher's checks).

    Raises:
        UsageError: one line naming the path (the file exists or cannot be created).
    """
    text = json.dumps(document(record))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        raise UsageError(f"trace file {path} already exists; choose another --trace "
                         "(collbench never overwrites results)") from None
    except OSError as exc:
        raise UsageError(f"cannot create trace file {path} (--trace): {exc.strerror or exc}") from None


def write(path: Path, record: dict[str, Any]) -> None:
    """Rewrite the file :func:`create` made, atomically (a reader never sees half a file),
    through a temporary file of its own in the same directory (never another file's name)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(document(record)))
        with contextlib.suppress(OSError):  # mkstemp's 0600: keep the mode create() gave
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read(path: str | Path) -> dict[str, Any]:
    """The collbench record of a trace file; a bad file is a UsageError (one line, exit 2)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read trace {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    record = data.get("collbench") if isinstance(data, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("measurements"), list):
        raise UsageError(f"{path} is not a collbench trace (no 'collbench' record; written by `collbench run --trace`?)")
    if record.get("version") != VERSION:
        raise UsageError(f"{path}: trace version {record.get('version')!r}, this collbench reads {VERSION}")
    return record
