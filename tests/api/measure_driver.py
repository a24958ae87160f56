"""Run under mpiexec by test_library_api.py: collbench.measure on COMM_WORLD, as a notebook
user would, and print what rank 0 got as JSON (other ranks print their row count)."""

import json
import sys

from mpi4py import MPI

import collbench

spec = collbench.make_spec("allreduce,allgather", sizes=[64, 4096], algorithms="native,ring",
                           iterations=3, warmup=1)
rows = list(collbench.measure(MPI.COMM_WORLD, spec))
rank = MPI.COMM_WORLD.Get_rank()
if rank == 0:
    json.dump([{"collective": r.collective, "algorithm": r.algorithm, "bytes": r.bytes,
                "placement": r.placement, "wrong": r.wrong, "nranks": r.nranks} for r in rows],
              sys.stdout)
else:
    assert rows == [], f"rank {rank} got rows"
