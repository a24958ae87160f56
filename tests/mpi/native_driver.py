"""Every algorithm through both MPI executors (Python and C), compared bit for bit with each
other and with the numpy simulator (the test oracle); every library collective through the C
executor and through mpi4py, compared with each other. Run under mpiexec by tests/mpi/test_native_mpi.py:

    mpiexec -n 3 python tests/mpi/native_driver.py --dtypes all --ops all

Inputs are random (not the harness's small integers), so float rounding and integer
wrap-around are exercised: the executors must apply the same operations in the same order as
the simulator, and the same arithmetic. Rank 0 gathers every output, simulates, compares, and
prints one JSON line with what ran and what differed.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np


def _inputs(problem, dtype: np.dtype, op: str | None, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = []
    for rank in range(problem.nranks):
        n = problem.input_len(rank)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            inputs.append(rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True))
        elif op == "prod":  # stays finite over 8 ranks, rounds at every step
            inputs.append((1 + rng.uniform(-0.3, 0.3, n)).astype(dtype))
        else:
            inputs.append((rng.standard_normal(n) * 100).astype(dtype))
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--ops", default="sum")
    parser.add_argument("--counts", default="37")
    parser.add_argument("--movement-dtypes", default=None,
                        help="dtypes for allgather/broadcast (default: the same as --dtypes)")
    args = parser.parse_args()

    import mpi4py

    mpi4py.rc.thread_level = "single"
    from mpi4py import MPI

    from collbench.algorithms import Collective, Layout
    from collbench.algorithms.registry import get_algorithm
    from collbench.algorithms.simulate import simulate
    from collbench.backends.base import OpRequest, Placement
    from collbench.backends.mpi import MpiBackend
    from collbench.dtypes import DTYPES, parse_dtypes, parse_ops

    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    layout = Layout.blocked(nranks, 2) if nranks >= 4 and nranks % 2 == 0 else None
    backends = {"native": MpiBackend(comm, layout, executor="native"),
                "python": MpiBackend(comm, layout, executor="python")}
    dtypes = parse_dtypes(args.dtypes)
    movement = parse_dtypes(args.movement_dtypes) if args.movement_dtypes else dtypes
    ops = parse_ops(args.ops)
    counts = [int(c) for c in args.counts.split(",")]
    for backend in backends.values():
        backend.reserve(max(counts) * nranks * 8 * 2, list(DTYPES.values()))

    ran: dict[str, int] = {}
    covered: set[tuple] = set()
    mismatches: list[str] = []
    seed = 0
    for collective in Collective:
        root = nranks - 1 if collective.rooted else 0
        # what `--algo all` means on the mpi backend (native only where MPI has the collective)
        for algorithm in backends["python"].algorithm_names(collective):
            for dtype in (dtypes if collective.reduces else movement):
                for op in (ops if collective.reduces else (None,)):
                    for placement in Placement:
                        for count in counts:
                            seed += 1
                            request = OpRequest(collective, algorithm, dtype, op, count, placement, root)
                            if backends["python"].reason(request):
                                continue
                            problem = backends["python"].problem(request)
                            data = _inputs(problem, dtype.numpy, op, seed)
                            outputs = {}
                            for name, backend in backends.items():
                                prepared = backend.prepare(request)
                                try:
                                    poison = np.full(np.shape(prepared.output), 0, dtype=dtype.numpy)
                                    poison.view(np.uint8)[...] = 0xA5
                                    backend.write(prepared.output, poison)
                                    if collective is not Collective.BROADCAST or rank == root:
                                        backend.write(prepared.input, data[rank])
                                    prepared.run()
                                    outputs[name] = (prepared.executor, backend.read(prepared.output))
                                finally:
                                    if prepared.teardown is not None:
                                        prepared.teardown()
                            gathered = comm.gather(outputs, root=0)
                            if rank != 0:
                                continue
                            case = f"{collective.value} {algorithm} {dtype.name} {op} {placement.value} count={count}"
                            covered.add((collective.value, algorithm, op))
                            expected = None
                            if algorithm != "native":
                                schedule = get_algorithm(algorithm).schedule(problem)
                                with warnings.catch_warnings():
                                    warnings.simplefilter("ignore")
                                    expected = simulate(schedule, data, op or "sum",
                                                        in_place=placement is Placement.IN_PLACE)
                            for r, per_rank in enumerate(gathered):
                                for executor, _out in per_rank.values():
                                    ran[executor] = ran.get(executor, 0) + 1
                                if collective is Collective.REDUCE and r != root:
                                    continue  # undefined outside the root
                                bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[dtype.itemsize]
                                native_out, python_out = per_rank["native"][1], per_rank["python"][1]
                                if not np.array_equal(native_out.view(bits), python_out.view(bits)):
                                    mismatches.append(f"{case} rank {r}: native != python")
                                if expected is not None and not np.array_equal(
                                        native_out.view(bits), expected[r].view(bits)):
                                    mismatches.append(f"{case} rank {r}: native != simulator")
    for backend in backends.values():
        backend.close()
    if rank == 0:
        print(json.dumps({"nranks": nranks, "ran": ran, "covered": sorted(map(list, covered)),
                          "mismatches": mismatches[:20], "mismatch_count": len(mismatches)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
