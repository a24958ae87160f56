"""Short summary of a scripts/gpu_check.sh run: one line per results file, then the kernel facts.

    python3 scripts/gpu_summary.py WORKDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from collbench.results.files import read_results


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
        wrong = sum(r.wrong or 0 for r in rows)
        peak = max(r.busbw_gbps for r in rows)
        fastest = min(r.time_us for r in rows if r.bytes > 0) if any(r.bytes for r in rows) else 0.0
        kinds = sorted({f"{r.backend}/{r.executor}" for r in rows})
        flag = "" if results.complete else " INCOMPLETE"
        print(f"{path.name:28s} {len(rows):5d} {wrong:6d} {peak:9.1f}GB/s {fastest:7.2f}us  {', '.join(kinds)}{flag}")
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
