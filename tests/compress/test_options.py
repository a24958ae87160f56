"""Bad options of the compressed algorithms are one clear error (exit status 2), before
anything runs; what does not apply is skipped under all-compressed and refused when named."""

from __future__ import annotations

import pytest

from cbtest import run_cli
from collbench.compress.options import check_sweep, dtype_problem, parse, size_problem
from collbench.dtypes import DTYPES
from collbench.errors import UsageError
from collbench.execute.programs import check_algorithm_names

F32 = (DTYPES["float32"],)


@pytest.mark.parametrize("options, message", [
    ({"density": "0"}, "density=0: must be in (0, 1]"),
    ({"density": "1.5"}, "density=1.5: must be in (0, 1]"),
    ({"density": "abc"}, "density=abc: expected a number"),
    ({"format": "int4"}, "format=int4: unknown format"),
    ({"block": "0"}, "block=0: must be at least 1"),
    ({"shape": "12"}, "shape=12: expected ROWSxCOLS"),
    ({"switch": "2"}, "switch=2: must be in (0, 1]"),
])
def test_bad_values(options, message) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse(options)


def test_explicit_options_must_fit_every_size() -> None:
    with pytest.raises(UsageError, match=r"block=256 is larger than the count \(64 elements\) at 256 B"):
        check_sweep(["quant_ring"], {"block": 256}, [256, 1 << 20], F32)
    with pytest.raises(UsageError, match=r"rank=64 is larger than the 32x32 matrix allows \(32\)"):
        check_sweep(["powersgd"], {"rank": 64}, [4096], F32)
    with pytest.raises(UsageError, match=r"shape=10x10 holds 100 elements, not the count 1024"):
        check_sweep(["powersgd"], {"shape": "10x10"}, [4096], F32)
    with pytest.raises(UsageError, match="-O densty: unknown option"):
        check_sweep(["topk_rd"], {"densty": "0.1"}, [4096], F32)
    # defaults adapt to small counts instead; registry options pass through
    assert check_sweep(["quant_ring", "powersgd", "ring"], {"inner": "ring"}, [8, 4096], F32) is not None
    assert check_sweep(["ring"], {"density": "7"}, [8], F32) is None   # no compressed algorithm


def test_what_a_dtype_or_op_cannot_do() -> None:
    opts = parse({"format": "fp8"})
    assert "format fp8 cannot hold int32 values" in dtype_problem("quant_ring", opts, DTYPES["int32"], "sum")
    assert "cannot hold float64" in dtype_problem("quant_oneshot", opts, DTYPES["float64"], "sum")
    assert "not int8" in dtype_problem("topk_rd", opts, DTYPES["int8"], "sum")
    assert "op max is not supported" in dtype_problem("gtopk", opts, DTYPES["float32"], "max")
    assert dtype_problem("powersgd", opts, DTYPES["float64"], "sum") is None
    assert size_problem("quant_ring", parse({}), 3) is None          # default block shrinks


def test_names() -> None:
    assert check_algorithm_names(["dense_ring", "topk_rd", "all-compressed"]) == (
        "ring", "topk_rd", "all-compressed")
    with pytest.raises(UsageError, match="compressed allreduce: topk_allgather"):
        check_algorithm_names(["topk"])


@pytest.mark.mpi
@pytest.mark.parametrize("args, message", [
    (["-O", "density=1.5"], "density=1.5: must be in (0, 1]"),
    (["-O", "format=fp8,block=512", "-b", "1K", "-e", "1K"], "block=512 is larger than the count"),
    (["--algo", "quant_ring", "-d", "int32"], "format int8 cannot hold int32 values"),
    (["--algo", "powersgd", "-O", "rank=40", "-b", "4K", "-e", "4K"], "rank=40 is larger than the 32x32"),
])
def test_cli_errors(args, message, tmp_path) -> None:
    algo = [] if "--algo" in args else ["--algo", "topk_rd,quant_ring"]
    result = run_cli(["run", "allreduce", *algo, *args, "-np", "1", "-n", "1", "-w", "1",
                      "--out", str(tmp_path / "x.jsonl")], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
