"""Building and loading the C executor's library (csrc/native_executor.c), at first use.

The shared library is built with the MPI compiler wrapper that belongs to mpi4py's MPI
(:func:`find_compiler`) into a cache keyed by the sources, the compiler and the MPI library
(``$XDG_CACHE_HOME/collbench/native``, default ``~/.cache/collbench/native``). Ranks on a node
take a file lock, so one of them compiles while the others sleep; the result is renamed into
place atomically, so concurrent jobs and nodes sharing a home directory never see a partial
file. :func:`load_agreed` makes every rank agree: if any rank cannot load the library, none
uses it, and the reason is reported once.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..gpu.kernel_sources import (
    csrc_dir,  # where every C/CUDA source lives ($COLLBENCH_CSRC honoured)
    sources_problem,
)
from .c_binding import HEADER, NativeLibrary, constants

SOURCE = "native_executor.c"
# -fno-trapping-math lets the compiler evaluate both sides of the branch-free 16-bit float
# conversions (so those loops vectorize); it changes no result, only which FP flags may be raised.
CFLAGS = ("-O3", "-fPIC", "-shared", "-fno-fast-math", "-ffp-contract=off", "-fno-trapping-math")
# extra flags (part of the cache key), e.g. -DCB_NO_TARGET_CLONES to build only the baseline loops.
# This variable, the cache directory and the library's file name keep the "native" users know.
CFLAGS_ENV = "COLLBENCH_NATIVE_CFLAGS"
BUILD_TIMEOUT_S = 300


class NativeUnavailable(Exception):
    """The C executor cannot be used here; the message says why (one line)."""


def _mpi4py_flavour() -> str:
    """Which MPI ABI mpi4py's extension was built for (``mpich``, ``openmpi``, ``abi``, ...)."""
    from mpi4py import MPI

    parts = Path(MPI.__file__).name.split(".")
    return parts[1] if len(parts) > 3 else ""


def find_compiler() -> tuple[str, str]:
    """(compiler command, where it came from) for building against mpi4py's MPI.

    Order: ``$MPICC``; ``mpicc`` beside the Python executable (the MPICH/Open MPI wheels install
    it there; ``mpicc_abi`` first when mpi4py uses the MPI standard ABI); mpi4py's build
    configuration; ``cc`` on Cray (the Programming Environment's MPI wrapper); ``mpicc`` on PATH.

    Raises:
        NativeUnavailable: none of these exists.
    """
    env = os.environ.get("MPICC")
    if env:
        return env, "$MPICC"
    beside = Path(sys.executable).parent
    names = ("mpicc_abi", "mpicc") if _mpi4py_flavour() == "abi" else ("mpicc",)
    for name in names:
        if (beside / name).is_file():
            return str(beside / name), "beside the Python executable"
    try:
        import mpi4py

        configured = (mpi4py.get_config() or {}).get("mpicc")
    except Exception:  # noqa: BLE001 - an odd mpi4py build must not stop the fallback search
        configured = None
    if configured:
        return configured, "mpi4py's build configuration"
    if (os.environ.get("CRAYPE_VERSION") or os.environ.get("PE_ENV")) and shutil.which("cc"):
        return shutil.which("cc") or "cc", "Cray compiler wrapper"
    on_path = shutil.which("mpicc")
    if on_path:
        return on_path, "PATH"
    raise NativeUnavailable("no MPI compiler wrapper found (set MPICC, or install the MPI's mpicc)")


def loaded_mpi_libraries() -> set[str]:
    """Paths of the MPI libraries mapped into this process (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps
                    if re.search(r"/libmpi[^/]*\.so", line) and line.split()[-1].startswith("/")}
    except OSError:
        return set()


def cflags() -> list[str]:
    """The compiler flags: ours, then ``$COLLBENCH_NATIVE_CFLAGS`` split as a shell would.

    Raises:
        NativeUnavailable: the variable does not split into words (an unbalanced quote).
    """
    text = os.environ.get(CFLAGS_ENV, "")
    try:
        extra = shlex.split(text)
    except ValueError as exc:
        raise NativeUnavailable(f"${CFLAGS_ENV}={text!r}: {str(exc).lower()} (its flags are split "
                                "into words as a shell would)") from None
    return [*CFLAGS, *extra]


def environment_problem() -> str | None:
    """Why the build variables cannot build the library (one line naming the variable), or None:
    ``$COLLBENCH_NATIVE_CFLAGS`` that does not split into words, ``$COLLBENCH_CSRC`` without
    this library's sources. Cheap (no compiler, no MPI): the CLI asks before launching ranks."""
    try:
        cflags()
    except NativeUnavailable as exc:
        return str(exc)
    return sources_problem((SOURCE, HEADER))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collbench" / "native"


def build_digest(compiler: str) -> str:
    """Key of a build: sources, flags, the compiler (path and file) and the MPI library."""
    from mpi4py import MPI

    problem = sources_problem((SOURCE, HEADER))
    if problem:
        raise NativeUnavailable(problem)
    h = hashlib.sha256()
    for name in (SOURCE, HEADER):
        h.update((csrc_dir() / name).read_bytes())
    h.update(" ".join(cflags()).encode())
    words = shlex.split(compiler)
    resolved = shutil.which(words[0]) if words else None
    h.update(compiler.encode())
    if resolved:
        stat = os.stat(resolved)
        h.update(f"{os.path.realpath(resolved)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    h.update(MPI.Get_library_version().encode())
    for path in sorted(loaded_mpi_libraries()):
        stat = os.stat(path)
        h.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def build_library(compiler: str, origin: str, target: Path) -> bool:
    """Compile into ``target`` unless it exists; True when this process compiled it.

    Ranks of one node (and jobs sharing the cache) serialize on a lock file: the first compiles,
    the others sleep in the kernel (no MPI spinning that would starve the compiler) and then
    find the file. The library is written under a temporary name and renamed into place, so no
    one ever loads a partial file, even where the filesystem ignores locks.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass  # e.g. NFS without lock support: the atomic rename alone keeps it safe
        if target.is_file():
            return False
        tmp = target.with_name(f".{target.name}.{socket.gethostname()}.{os.getpid()}.tmp")
        command = [*shlex.split(compiler), *cflags(), "-I", str(csrc_dir()), "-o", str(tmp),
                   str(csrc_dir() / SOURCE)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except FileNotFoundError:
            raise NativeUnavailable(f"MPI compiler {compiler!r} ({origin}) not found") from None
        except PermissionError:
            raise NativeUnavailable(f"MPI compiler {compiler!r} ({origin}) is not executable") from None
        except subprocess.TimeoutExpired:
            raise NativeUnavailable(f"{compiler} ({origin}) did not finish within {BUILD_TIMEOUT_S} s") from None
        if result.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "no output")
            raise NativeUnavailable(f"building {SOURCE} with {compiler} ({origin}) failed: {detail.strip()}")
        os.replace(tmp, target)
        return True


@functools.lru_cache(maxsize=1)
def load() -> NativeLibrary:
    """Build (or find in the cache) and load the C executor's library for mpi4py's MPI.

    Raises:
        NativeUnavailable: no compiler, a failed build, or a library that does not belong to
            the MPI this process uses.
    """
    compiler, origin = find_compiler()
    digest = build_digest(compiler)
    target = cache_dir() / f"libcollbench_native-{digest[:20]}.so"
    try:
        built = build_library(compiler, origin, target) if not target.is_file() else False
    except OSError as exc:  # unwritable cache directory and the like
        raise NativeUnavailable(f"cannot build into {target.parent}: {exc}") from None
    before = loaded_mpi_libraries()
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise NativeUnavailable(f"cannot load {target}: {exc}") from None
    foreign = loaded_mpi_libraries() - before
    if before and foreign:
        raise NativeUnavailable(f"{compiler} ({origin}) links {', '.join(sorted(foreign))}, not the "
                                f"MPI library mpi4py uses ({', '.join(sorted(before))}); set MPICC")
    version = lib.cb_abi_version()
    if version != constants()["ABI_VERSION"]:
        raise NativeUnavailable(f"{target} has ABI {version}, expected {constants()['ABI_VERSION']}")
    return NativeLibrary(path=target, digest=digest, compiler=compiler, compiler_origin=origin,
                         built_now=built, cflags=tuple(cflags()), lib=lib)


def load_agreed(comm: Any) -> tuple[NativeLibrary | None, str | None]:
    """Collective over ``comm``: (library, None) when every rank loaded it, else (None, reason).

    Ranks must never disagree about the executor (a C rank and a Python rank would still
    interoperate on the wire, but rows would describe a mix), so one failing rank turns the
    C executor off everywhere and its reason is what every rank reports.
    """
    try:
        library, reason = load(), None
    except NativeUnavailable as exc:
        library, reason = None, str(exc)
    reasons = comm.allgather(reason)
    failed = [rank for rank, r in enumerate(reasons) if r]
    if not failed:
        return library, None
    where = "" if len(failed) == len(reasons) else f" (on rank {', '.join(map(str, failed))})"
    return None, reasons[failed[0]] + where
