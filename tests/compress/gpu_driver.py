"""Run under mpiexec with the fake CuPy first on PYTHONPATH (tests/gpu/fakecuda) by
test_gpu_path.py: every nccl runner (collbench/compress/gpu_runners.py, whose kernels the fake
runs as numpy transliterations of csrc/compress.cu) against the mpi runner on the same inputs
and against the numpy reference. Must agree bit for bit (powersgd: within float32 rounding),
outputs and the bytes sent.

Argument: comma-separated counts. Prints one JSON object: failures (empty: all good), cases.
With a real CuPy and one GPU per rank (no fake on the path) it checks the compiled kernels and
NCCL the same way: ``mpiexec -n 2 python tests/compress/gpu_driver.py 7,1000,4099``.
"""

import json
import sys

import cupy
import numpy as np
from cupy.cuda import nccl  # a submodule: cupy.cuda does not import it by itself
from mpi4py import MPI

from collbench.compress import reference
from collbench.compress.gpu_runners import GPU_RUNNERS, NcclContext
from collbench.compress.inputs import make_input
from collbench.compress.names import family
from collbench.compress.options import parse, size_problem
from collbench.compress.runners import RUNNERS
from collbench.dtypes import DTYPES

comm = MPI.COMM_WORLD
rank, p = comm.Get_rank(), comm.Get_size()
COUNTS = [int(c) for c in sys.argv[1].split(",")]
CASES = [  # (algorithm, options, dtypes)
    ("topk_allgather", {"density": "0.01"}, ("float32", "bfloat16")),
    ("topk_allgather", {"density": "0.3"}, ("float16",)),           # odd k: pairs land unaligned
    ("topk_rd", {"density": "0.05"}, ("float32", "float16")),
    ("topk_rd", {"density": "0.3", "switch": "0.4"}, ("bfloat16",)),  # goes dense midway
    ("gtopk", {"density": "0.02"}, ("float32", "bfloat16")),
    ("gtopk", {"density": "0.5"}, ("float16",)),
    ("quant_ring", {"format": "int8", "block": "16"}, ("float32", "bfloat16")),
    ("quant_ring", {"format": "fp8"}, ("float16", "float32")),
    ("quant_oneshot", {"format": "int8"}, ("float32",)),
    ("quant_oneshot", {"format": "fp8", "block": "7"}, ("bfloat16", "float32")),
    ("powersgd", {"rank": "2"}, ("float32", "bfloat16")),
    ("powersgd", {}, ("float16",)),
]
#: within float32 rounding of the references, as in runner_driver.py (not bit for bit: the
#: kernels sum in another order than the host's BLAS and orthogonalize by Gram-Schmidt)
CLOSE = {"powersgd"}


def storage(dtype):
    return np.uint16 if dtype.name == "bfloat16" else dtype.numpy


def expected(name, opts, inputs, dtype):
    n = inputs[0].size
    k = opts.k(n)
    if name in ("topk_allgather", "topk_rd"):
        return reference.topk_sum(inputs, k)
    if name == "gtopk":
        return reference.gtopk([(reference.selected(x, k), x[reference.selected(x, k)]) for x in inputs],
                               n, k, dtype.numpy)
    if name == "quant_ring":
        return reference.quant_ring(inputs, opts.format, opts.block_for(n))
    if name == "powersgd":
        return reference.powersgd(reference.exact_sum(inputs), opts.matrix(n), opts.rank_for(n))
    return reference.quant_oneshot(inputs, opts.format, opts.block_for(n))


def mismatches(name, got, want, dtype):
    """Elements of ``got`` that differ from ``want``: bit for bit, or within the tolerance."""
    if name in CLOSE:
        want = np.asarray(want, dtype=np.float64)
        tol = 1e-3 * np.abs(want).max(initial=0) + 2 ** -7 * np.abs(want)
        return int(np.count_nonzero(~(np.abs(got.astype(np.float64) - want) <= tol)))
    want = np.asarray(want).astype(dtype.numpy)
    return int(np.count_nonzero(got.view(np.uint8) != want.view(np.uint8)))


local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
cupy.cuda.Device(local.Get_rank() % cupy.cuda.runtime.getDeviceCount()).use()
local.Free()
uid = comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
nccl_comm = nccl.NcclCommunicator(p, uid, rank)
stream = cupy.cuda.Stream(non_blocking=True)
ctx = NcclContext(nccl_comm, nccl, cupy, stream, rank, p)

failures, ran = [], 0
for name, raw, dtypes in CASES:
    opts = parse(raw)
    for dname in dtypes:
        dtype = DTYPES[dname]
        for count in COUNTS:
            if size_problem(name, opts, count):
                continue
            for in_place in (False, True):
                seed = 1 + ran % 3
                x = make_input(family(name), dtype, p, rank, count, seed)
                if name == "quant_oneshot" and count > 1 and seed == 2:
                    x[: count // 3] = 0                      # all-zero blocks: scale 1, codes 0
                # the host runner
                host_out = np.full(count, np.nan, dtype=dtype.numpy)
                host_src = host_out if in_place else x.copy()
                if in_place:
                    host_out[...] = x
                host = RUNNERS[name](comm, host_src, host_out, dtype, opts)
                host.run()
                # the nccl runner, on device buffers poisoned first
                dev_out = cupy.empty(max(count, 1), dtype=storage(dtype))[:count]
                dev_out.view(np.uint8).set(np.full(count * dtype.itemsize, 0xA5, dtype=np.uint8))
                dev_src = dev_out if in_place else cupy.empty(max(count, 1), dtype=storage(dtype))[:count]
                dev_src.set(x.view(storage(dtype)))
                gpu = GPU_RUNNERS[name](ctx, dev_src, dev_out, dtype, opts)
                gpu.run()
                gpu.run() if not in_place else None          # a second run gives the same
                got = dev_out.get().view(dtype.numpy)
                ran += 1
                where = [name, raw, dname, count, in_place, rank]
                bad = mismatches(name, got, host_out.astype(np.float64) if name in CLOSE else host_out, dtype)
                if bad:
                    failures.append(where + [f"{bad} elements differ from the mpi runner"])
                if gpu.sent_bytes != host.sent_bytes:
                    failures.append(where + [f"sent {gpu.sent_bytes} B, the mpi runner {host.sent_bytes} B"])
                if gpu.stages() != host.stages():
                    failures.append(where + ["stages differ"])
                if name == "topk_rd":
                    hf, gf = host.facts(), gpu.facts()
                    if (hf["dense_from_step"], hf["fill"]) != (gf["dense_from_step"], gf["fill"]):
                        failures.append(where + [f"facts {gf} vs {hf}"])
                if not in_place and not np.array_equal(dev_src.get().view(np.uint8), x.view(np.uint8)):
                    failures.append(where + ["input changed"])
                everything = comm.gather((x, got), root=0)
                if rank == 0:
                    want = expected(name, opts, [e[0] for e in everything], dtype)
                    for r, (_, out) in enumerate(everything):
                        if mismatches(name, out, want, dtype):
                            failures.append([name, raw, dname, count, in_place, r, "differs from the reference"])
nccl_comm.destroy()
all_failures = comm.gather(failures, root=0)
if rank == 0:
    flat = [f for part in all_failures for f in part]
    print(json.dumps({"failures": flat[:20], "cases": ran}))
