"""``calibrate --from`` skips rows of 0 bytes (issue 11 follow-up): nccl-tests' allgather below one
element per rank times an empty launch, and fitting those rows drove the LL latency factor to
~0.01 (every small row then -99 %)."""

from __future__ import annotations

import json
from pathlib import Path

from collbench.analysis.model.fit import calibrate_from, format_residuals, samples
from collbench.analysis.model.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
POLARIS = ROOT / "results" / "public" / "alcf-polaris"
RAW = POLARIS / "raw" / "nccl_2_21-n2.g4-all_gather_output.dat.4"


def _zero_rows(path: Path) -> int:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sum(1 for r in rows if r.get("type") == "row" and r["bytes"] == 0)


def test_imported_log_with_zero_byte_rows_fits_without_them(tmp_path, capsys):
    from collbench.cli import main

    imported = tmp_path / "allgather.jsonl"
    assert main(["import", "nccl-tests", str(RAW), "--collective", "allgather",
                 "-o", str(imported)]) == 0
    zeros = _zero_rows(imported)
    assert zeros == 10                      # 0 B and the sizes below 4 B x 8 ranks, both placements
    capsys.readouterr()

    skipped: dict[str, int] = {}
    rows = samples([str(imported)], load_profile("perlmutter").nccl, skipped)
    assert skipped == {"zero_bytes": zeros} and rows and min(s.nbytes for s in rows) > 0

    out = tmp_path / "fit.json"
    assert main(["calibrate", "--from", str(imported), str(POLARIS / "allreduce-2node-8gpu.jsonl"),
                 "--profile", "perlmutter", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"# skipped {zeros} rows of 0 bytes" in text
    record = json.loads(out.read_text())
    assert record["fit"]["skipped"] == {"zero_bytes": zeros}
    lat = record["nccl"]["realisation"]["inter"]["lat_scale"]
    # with the 0-byte rows fitted, LL's factor was 0.011; without them it is NCCL's latency, near 1
    assert 0.5 < lat["LL"] < 2.0, lat
    # and the small rows are no longer predicted at -99 %
    small = [line for line in text.splitlines() if "ring/LL " in line or "tree/LL " in line]
    assert small and all(abs(float(line.split()[-1].rstrip("%"))) < 90 for line in small)


def test_logs_without_zero_byte_rows_say_nothing_and_fit_as_before(tmp_path):
    log = str(POLARIS / "allreduce-2node-8gpu.jsonl")
    record, res = calibrate_from([log], load_profile("perlmutter"))
    assert "skipped" not in record["fit"] and len(res) == 58
    assert "# skipped" not in format_residuals(res, record)


def test_a_base_profile_fit_note_is_not_carried_over(tmp_path):
    """A profile fitted on logs with 0-byte rows, used as the base of a fit on logs without
    them: the new profile does not claim the old skips."""
    first, _ = calibrate_from([str(POLARIS / "allgather-2node-8gpu.jsonl")], load_profile("perlmutter"))
    assert first["fit"]["skipped"] == {"zero_bytes": 10}
    base = tmp_path / "base.json"
    base.write_text(json.dumps(first))
    second, _ = calibrate_from([str(POLARIS / "allreduce-2node-8gpu.jsonl")], load_profile(str(base)))
    assert "skipped" not in second["fit"]
