"""Real mpiexec at 1, 2, 3 and 4 ranks: every collective × a spread of dtypes and ops × both
placements, validated. One launch per rank count runs the whole matrix."""

from __future__ import annotations

import itertools

import pytest

from cbtest import read_jsonl, run_cli

pytestmark = pytest.mark.mpi

COLLECTIVES = ["allreduce", "allgather", "reduce_scatter", "broadcast", "reduce", "alltoall", "alltoallv"]
DTYPES = ["int8", "uint8", "int32", "uint64", "float16", "bfloat16", "float32", "float64"]
OPS = ["sum", "prod", "max", "min", "avg"]
SIZES = [0, 502, 1004]          # uneven element counts; 0 is legal


def _expected_combinations(nranks: int) -> set[tuple]:
    """What the MPI backend must have measured: everything but avg (no MPI operator), bfloat16
    reductions (no MPI datatype in MPICH), out-of-place broadcast (MPI_Bcast is in place) and
    in-place alltoallv (MPI_IN_PLACE would need a symmetric count matrix)."""
    combos = set()
    for coll, dtype in itertools.product(COLLECTIVES, DTYPES):
        reduces = coll in ("allreduce", "reduce_scatter", "reduce")
        for op in (OPS if reduces else [None]):
            if op == "avg" or (reduces and dtype == "bfloat16"):
                continue
            for placement in ("out_of_place", "in_place"):
                if coll == "broadcast" and placement == "out_of_place":
                    continue
                if coll == "alltoallv" and placement == "in_place":
                    continue
                combos.add((coll, dtype, op, placement))
    return combos


@pytest.mark.parametrize("nranks", [1, 2, 3, 4])
def test_every_collective_validates(nranks, tmp_path):
    out = tmp_path / "matrix.jsonl"
    args = ["run", *COLLECTIVES, "-d", ",".join(DTYPES), "-o", "all", "-b", "0", "-e", "1004",
            "-i", "502", "-n", "2", "-w", "1", "-c", "2", "-np", str(nranks), "-r", str(nranks - 1),
            "--out", str(out), "-T", "60"]
    result = run_cli(args, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_jsonl(out)
    meta, rows, summary = records[0], records[1:-1], records[-1]
    assert meta["type"] == "metadata" and meta["nranks"] == nranks
    assert meta["mpi"]["thread_level"] == "single"
    assert summary["type"] == "summary" and summary["rows"] == len(rows)
    assert all(r["wrong"] == 0 for r in rows), [r for r in rows if r["wrong"]]
    seen = {(r["collective"], r["dtype"], r["op"], r["placement"]) for r in rows}
    assert seen == _expected_combinations(nranks)
    assert len(rows) == len(seen) * len(SIZES)
    assert all(r["root"] == nranks - 1 for r in rows if r["collective"] in ("broadcast", "reduce"))
    # the table shows what was skipped, once
    assert result.stdout.count("no native average operator") == 1
    assert "Out of bounds values : 0 OK" in result.stdout
