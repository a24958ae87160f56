"""Build csrc/mpi_baselines.c as a shared library and call it from an mpi4py process."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def mpi_tool(name: str) -> str:
    """mpicc/mpiexec of the MPI that mpi4py uses (the bundled MPICH installs them beside python)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def launch_env(nranks: int) -> dict[str, str]:
    """The environment `collbench run -np N` gives its ranks: MPICH's point-to-point collectives
    when the ranks oversubscribe the cores (docs/performance.md §2), so C and collbench compare
    like for like with what the CLI measures."""
    from collbench.run.launcher import oversubscription_environment

    return {**os.environ, **oversubscription_environment(nranks)}


def build(workdir: Path) -> Path:
    library = workdir / "libcollbench_baselines.so"
    subprocess.run([mpi_tool("mpicc"), "-O2", "-shared", "-fPIC", "-DCOLLBENCH_LOOP_LIBRARY", "-o",
                    str(library), str(REPO / "csrc" / "mpi_baselines.c")], check=True)
    return library


class Baselines:
    """The C functions, bound for calls with an mpi4py communicator."""

    def __init__(self, library: Path) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        lib = ctypes.CDLL(str(library))
        # MPICH's MPI_Comm is an int, Open MPI's a pointer: follow mpi4py's handle size.
        self._handle = ctypes.c_void_p if MPI._sizeof(MPI.Comm) == ctypes.sizeof(ctypes.c_void_p) else ctypes.c_int
        self._allreduce = lib.collbench_allreduce_loop
        self._allreduce.restype = ctypes.c_double
        self._allreduce.argtypes = [self._handle, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_int]
        self._exchange = lib.collbench_exchange_loop
        self._exchange.restype = ctypes.c_double
        self._exchange.argtypes = [self._handle, ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_long]

    def _c(self, comm: Any) -> Any:
        return self._handle(self._mpi._handleof(comm))

    def allreduce_loop(self, comm: Any, nbytes: int, iters: int, warmup: int, inplace: bool = False) -> float:
        return self._allreduce(self._c(comm), nbytes, iters, warmup, int(inplace))

    def exchange_loop(self, comm: Any, peer: int, nbytes: int, steps: int, iters: int) -> float:
        return self._exchange(self._c(comm), peer, nbytes, steps, iters)
