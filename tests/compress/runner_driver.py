"""Run under mpiexec by test_runners_mpi.py: every compressed runner at odd counts, dtypes and
both placements on COMM_WORLD, compared on rank 0 with the numpy references
(collbench.compress.reference): bit for bit where the result is defined exactly (top-k,
gtopk, the quantized ones: same quantization, same order), within float32 rounding for
powersgd. Prints one JSON list of failures (empty: all good) and the cases run."""

import json
import sys

import numpy as np
from mpi4py import MPI

from collbench.compress import reference
from collbench.compress.inputs import make_input
from collbench.compress.names import family
from collbench.compress.options import parse, size_problem
from collbench.compress.runners import RUNNERS
from collbench.dtypes import DTYPES

comm = MPI.COMM_WORLD
rank, p = comm.Get_rank(), comm.Get_size()
COUNTS = [int(c) for c in sys.argv[1].split(",")] if len(sys.argv) > 1 else [1, 7, 1000, 4099]
CASES = [  # (algorithm, options, dtypes)
    ("topk_allgather", {"density": "0.01"}, ("float32", "bfloat16")),
    ("topk_allgather", {"density": "1"}, ("float16",)),
    ("topk_rd", {"density": "0.05"}, ("float32", "float16")),
    ("topk_rd", {"density": "0.3", "switch": "0.4"}, ("bfloat16",)),    # goes dense midway
    ("topk_rd", {"density": "0.001"}, ("float64",)),
    ("gtopk", {"density": "0.02"}, ("float32", "bfloat16")),
    ("quant_ring", {"format": "int8", "block": "16"}, ("float32", "bfloat16")),
    ("quant_ring", {"format": "fp8"}, ("float16",)),
    ("quant_oneshot", {"format": "int8"}, ("float32",)),
    ("quant_oneshot", {"format": "fp8", "block": "7"}, ("bfloat16",)),
    ("powersgd", {"rank": "2"}, ("float32", "bfloat16")),
]


def expected(name, opts, inputs, dtype):
    n = inputs[0].size
    if name in ("topk_allgather", "topk_rd"):
        return reference.topk_sum(inputs, opts.k(n))
    if name == "gtopk":
        k = opts.k(n)
        sels = [(reference.selected(x, k), x[reference.selected(x, k)]) for x in inputs]
        return reference.gtopk(sels, n, k, dtype.numpy)
    if name == "quant_ring":
        return reference.quant_ring(inputs, opts.format, opts.block_for(n))
    if name == "quant_oneshot":
        return reference.quant_oneshot(inputs, opts.format, opts.block_for(n))
    return reference.powersgd(reference.exact_sum(inputs), opts.matrix(n), opts.rank_for(n))


failures, ran = [], 0
for name, raw, dtypes in CASES:
    opts = parse(raw)
    for dname in dtypes:
        dtype = DTYPES[dname]
        for count in COUNTS:
            if size_problem(name, opts, count):  # the plan refuses these (test_options.py)
                continue
            for in_place in (False, True):
                for seed in (1, 2):
                    x = make_input(family(name), dtype, p, rank, count, seed)
                    out = np.full(count, np.nan, dtype=dtype.numpy)
                    src = out if in_place else x.copy()
                    if in_place:
                        out[...] = x
                    runner = RUNNERS[name](comm, src, out, dtype, opts)
                    runner.run()
                    runner.run() if not in_place else None  # a second run must give the same
                    if not in_place and not np.array_equal(src.view(np.uint8), x.view(np.uint8)):
                        failures.append([name, raw, dname, count, in_place, rank, "input changed"])
                    everything = comm.gather((x, out), root=0)
                    ran += 1
                    if rank != 0:
                        continue
                    inputs = [e[0] for e in everything]
                    want = expected(name, opts, inputs, dtype)
                    for r, (_, got) in enumerate(everything):
                        if name == "powersgd":
                            tol = 1e-3 * np.abs(want).max(initial=0) + 2 ** -7 * np.abs(want)
                            bad = int(np.count_nonzero(~(np.abs(got.astype(np.float64) - want) <= tol)))
                        else:
                            bad = int(np.count_nonzero(got.view(np.uint8) != want.astype(dtype.numpy).view(np.uint8)))
                        if bad:
                            failures.append([name, raw, dname, count, in_place, r, bad])
if rank == 0:
    print(json.dumps({"failures": failures[:20], "cases": ran}))
