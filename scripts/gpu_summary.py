"""Short summary of a scripts/gpu_check.sh run: one line per results file, then the kernel facts.

    python3 scripts/gpu_summary.py WORKDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from collbench.results.files import Row, read_results


def communicating(row: Row) -> bool:
    """Rows whose time and bandwidth measure communication. At one rank nothing moves between
    ranks (reduce and broadcast still get busbw = algbw, from a local copy or a no-op), and a row
    of zero bytes runs nothing at all (in graph mode, an empty graph): both left out of the peak
    busbw and the minimum time, which would otherwise report launch overhead as a result."""
    return row.nranks > 1 and row.bytes > 0


def main(workdir: str) -> int:
    work = Path(workdir)
    print(f"{'file':28s} {'rows':>5s} {'wrong':>6s} {'peak busbw':>11s} {'min time':>9s}  backend/executors")
    for path in sorted(work.glob("*.jsonl")):
        try:
            results = read_results(path)
        except Exception as exc:  # noqa: BLE001 - a broken file is a finding, not a crash
            print(f"{path.name:28s} unreadable: {exc}")
            continue
        rows = results.rows
        if not rows:
            print(f"{path.name:28s} {0:5d}  (no rows{'' if results.complete else ', incomplete'})")
            continue
        wrong = sum(r.wrong or 0 for r in rows)  # every row is validated, no-op or not
        measured = [r for r in rows if communicating(r)]
        if measured:
            peak = f"{max(r.busbw_gbps for r in measured):9.1f}GB/s"
            fastest = f"{min(r.time_us for r in measured):7.2f}us"
        else:
            peak, fastest = f"{'-':>13s}", f"{'-':>9s}"
        kinds = sorted({f"{r.backend}/{r.executor}" for r in rows})
        flag = "" if results.complete else " INCOMPLETE"
        note = "" if measured else "  (no communicating rows: 1 rank or 0 bytes)"
        print(f"{path.name:28s} {len(rows):5d} {wrong:6d} {peak} {fastest}  {', '.join(kinds)}{flag}{note}")
    kernels = work / "gpu_kernels_check.json"
    if kernels.exists():
        data = json.loads(kernels.read_text())
        checks = data.get("checks", [])
        failed = [c for c in checks if c.get("status") == "fail"]
        print(f"kernel checks: {len(checks)} run, {len(failed)} failed")
        for key, value in (data.get("perf") or {}).items():
            print(f"  {key}: {value}")
        for check in failed[:8]:
            print(f"  FAIL {check.get('section')} {check.get('name')}: {str(check.get('detail'))[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
