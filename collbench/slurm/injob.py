"""Helpers the sweep script runs inside the job: ``python -m collbench.slurm preflight|nccl-verdict``."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence


def wheel_mpich_reason(library_version: str, maps: str | None = None) -> str | None:
    """Why this MPI looks like the pip MPICH wheel (None if it does not).

    ``maps`` is a process's /proc/<pid>/maps (default: this process's), to find where libmpi was
    loaded from; ``collbench slurm`` passes the maps of the job's Python, asked in a subprocess.
    """
    if "pypi.org/p/mpich" in library_version:
        return "MPI_Get_library_version names the pip mpich wheel"
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if re.search(r"/libmpi(ch)?\.so", path) and ("site-packages" in path or "dist-packages" in path):
            return f"libmpi is loaded from a Python package: {path}"
    return None


def cuda_mismatch(driver: int, runtime: int) -> str | None:
    """Why CuPy's CUDA runtime cannot run on this driver (versions as CUDA encodes them, e.g.
    12020 for 12.2), or None. A driver runs every runtime of its own major version and older
    (CUDA minor-version compatibility, https://docs.nvidia.com/deploy/cuda-compatibility/), so only
    a newer major version fails: cupy-cuda12x needs a CUDA 12 driver (>= 525.60.13)."""
    if driver <= 0:
        return "no CUDA driver found"
    if runtime // 1000 > driver // 1000:
        return (f"CuPy was built for CUDA {runtime // 1000}.{runtime % 1000 // 10} but the driver supports "
                f"CUDA {driver // 1000}.{driver % 1000 // 10}: install the CuPy for CUDA {driver // 1000} "
                f"(cupy-cuda{driver // 1000}x) or run on nodes with a newer driver")
    return None


def cuda_problem() -> str | None:
    """Whether CuPy works on this node: its CUDA runtime fits the driver, and a kernel compiles and
    runs (NVRTC is found). Catches a CUDA 11 module under cupy-cuda12x before the sweep starts."""
    try:
        import cupy
    except ImportError as exc:
        return f"CuPy cannot be imported ({exc}): pip install cupy-cuda12x in the job's environment"
    try:
        runtime = cupy.cuda.runtime
        mismatch = cuda_mismatch(runtime.driverGetVersion(), runtime.runtimeGetVersion())
        if mismatch:
            return mismatch
        if int(cupy.arange(4).sum()) != 6:
            return "CuPy computed a wrong sum on the GPU"
    except Exception as exc:  # noqa: BLE001 - any CUDA/NVRTC failure is the finding
        return f"CuPy cannot run a kernel ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def preflight(ranks: int, forbid_wheel: bool, check_cuda: bool = False) -> int:
    """Inside one step of ``ranks`` ranks: every rank must see the whole job (and a cluster MPI);
    with ``check_cuda``, rank 0 also checks that CuPy runs on this node's GPUs."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    size, rank = comm.Get_size(), comm.Get_rank()
    library = MPI.Get_library_version().strip()
    problems = []
    if size != ranks:
        problems.append(f"mpi4py sees a job of {size} rank(s), the step has {ranks}: mpi4py is not "
                        "built for the MPI this launcher starts (rebuild it with the site's mpicc/cc, "
                        "or set CB_SRUN_MPI to the PMI your MPI speaks, see `srun --mpi=list`)")
    wheel = wheel_mpich_reason(library)
    if forbid_wheel and wheel:
        problems.append(f"mpi4py runs on the pip MPICH wheel ({wheel}); on this cluster build mpi4py "
                        "against the system MPI (see the Python environment block of the script)")
    if check_cuda and rank == 0:
        cuda = cuda_problem()
        if cuda:
            problems.append(cuda)
    if rank == 0 or problems:
        first = library.splitlines()[0] if library else "?"
        sys.stdout.write(f"rank {rank} of {size} on {os.environ.get('SLURMD_NODENAME', os.uname().nodename)}: "
                         f"{first}\n")
        for problem in problems:
            sys.stdout.write(f"preflight: error: {problem}\n")
        sys.stdout.flush()
    if not problems:
        comm.Barrier()
    return 3 if problems else 0


# "Using network X" (all NCCL versions); "Assigned NET plugin X to comm" (NCCL >= 2.27)
_NET_RE = re.compile(r"Using network (.+?)\s*$|Assigned NET plugin (.+?) to comm")


def nccl_verdict(directory: Path, rc: int = 0, nodes: int = 2) -> str:
    """One line about NCCL's inter-node transport from an NCCL_DEBUG=INFO probe's logs.

    Looks for ``Using network <name>`` (AWS Libfabric / Libfabric / IB: a real network; Socket:
    TCP fallback), plugin-loading failures, and GPUDirect RDMA on the network channels.
    """
    text = ""
    for path in sorted(directory.glob("*.log")):  # NCCL_DEBUG_FILE, one per host and process
        try:
            text += path.read_text(errors="replace") + "\n"
        except OSError:
            continue
    if not text.strip() and (directory / "probe.out").is_file():  # NCCL_DEBUG_FILE unsupported: stdout
        text = (directory / "probe.out").read_text(errors="replace")
    if "NCCL INFO" not in text and "NCCL WARN" not in text:
        text = ""
    version = re.search(r"NCCL version (\S+)", text)
    networks = sorted({(m.group(1) or m.group(2)).strip() for line in text.splitlines()
                       if (m := _NET_RE.search(line))})
    gdr = bool(re.search(r"GDR ?1\b|GDRDMA|GPU Direct RDMA Enabled", text))
    provider = re.search(r"Selected [Pp]rovider is ([A-Za-z0-9_;.-]+)", text)
    no_plugin = re.search(r"NET/Plugin ?: ?(No plugin found|Plugin load returned|Failed to find)"
                          r"|Failed to initialize any NET plugin|NET/Plugin: Could not find", text)
    where = f"{nodes} node(s)" + ("" if nodes > 1 else "; one node does not exercise the network")
    ver = f"NCCL {version.group(1)}, " if version else ""
    real = [n for n in networks if n.lower() not in ("socket", "ib")]
    if not real and "IB" in networks:
        return (f"RDMA network: IB (NCCL's built-in verbs transport; {ver}{where}, GPUDirect RDMA "
                f"{'on' if gdr else 'not seen'})")
    if real:
        name = ", ".join(real)
        extra = f", provider {provider.group(1)}" if provider else ""
        return (f"network plugin found: {name} ({ver}{where}{extra}, GPUDirect RDMA "
                f"{'on' if gdr else 'not seen'})")
    if "Socket" in networks:
        return (f"TCP FALLBACK: NCCL uses sockets (NET/Socket; {ver}{where}) - inter-node bandwidth will "
                "be far below the network's; load the NCCL network plugin (aws-ofi-nccl) module")
    if no_plugin:
        return (f"NETWORK PLUGIN NOT FOUND ({no_plugin.group(0).strip()}; {ver}{where}); the probe "
                f"{'failed' if rc else 'ran'} - load the NCCL network plugin (aws-ofi-nccl) module")
    if rc:
        return f"probe failed (exit {rc}; {where}); see job/nccl-probe/probe.out"
    if not text.strip():
        return f"no NCCL log found ({where}); NCCL_DEBUG_FILE was not written"
    return f"undetermined: no 'Using network' line in the NCCL log ({ver}{where})"


def _helper_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m collbench.slurm")
    sub = parser.add_subparsers(dest="helper", required=True)
    pre = sub.add_parser("preflight")
    pre.add_argument("--ranks", type=int, required=True)
    pre.add_argument("--forbid-wheel-mpich", type=int, default=0)
    pre.add_argument("--check-cuda", type=int, default=0)
    ver = sub.add_parser("nccl-verdict")
    ver.add_argument("directory", type=Path)
    ver.add_argument("--rc", type=int, default=0)
    ver.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    if args.helper == "preflight":
        return preflight(args.ranks, bool(args.forbid_wheel_mpich), bool(args.check_cuda))
    sys.stdout.write(nccl_verdict(args.directory, args.rc, args.nodes) + "\n")
    return 0
