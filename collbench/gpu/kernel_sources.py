"""Kernel sources, their shared constants, and the dtype/op tables (no CUDA needed).

The constants live once, in ``csrc/collbench_common.cuh`` (``#define COLLBENCH_NAME <int>``);
this module parses them so Python and the kernels cannot disagree about buffer layouts.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

COMMON_HEADER = "collbench_common.cuh"

#: Reduction ops of the collbench specs. ``avg`` is ``sum`` followed by a division by the rank
#: count: the local reduce kernels reduce it as ``sum`` (call :func:`finalize_avg` once at the end);
#: the IPC kernels divide in-kernel before their single rounding.
OPS: tuple[str, ...] = ("sum", "prod", "max", "min", "avg")


@dataclass(frozen=True)
class DTypeInfo:
    """One collbench dtype as the kernels see it.

    Attributes:
        name: collbench dtype name, also the suffix of kernel names (``reduce_sum_float32``).
        storage: numpy/CuPy dtype of device buffers. bfloat16 is stored as ``uint16`` bit patterns
            because CuPy has no bfloat16 dtype; float16 is ``float16``.
        ctype: C type of one element in the kernels.
        dtype_id: ``COLLBENCH_DT_*`` id, for compiling a module for this dtype only.
        kind: ``"int"``, ``"uint"`` or ``"float"``.
    """

    name: str
    storage: np.dtype
    ctype: str
    dtype_id: int
    kind: str

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return int(self.storage.itemsize)


def _build_dtypes() -> dict[str, DTypeInfo]:
    rows = [
        ("int8", "int8", "cb::i8", "int"),
        ("uint8", "uint8", "cb::u8", "uint"),
        ("int32", "int32", "cb::i32", "int"),
        ("uint32", "uint32", "cb::u32", "uint"),
        ("int64", "int64", "cb::i64", "int"),
        ("uint64", "uint64", "cb::u64", "uint"),
        ("float16", "float16", "cb::half_t", "float"),
        ("bfloat16", "uint16", "cb::bf16_t", "float"),
        ("float32", "float32", "float", "float"),
        ("float64", "float64", "double", "float"),
    ]
    consts = header_constants()
    table = {}
    for name, storage, ctype, kind in rows:
        table[name] = DTypeInfo(name, np.dtype(storage), ctype, consts[f"DT_{name.upper()}"], kind)
    return table


CSRC_ENV = "COLLBENCH_CSRC"


class SourcesNotFound(FileNotFoundError):
    """The kernel sources are not where they should be; the message (one line) says where it
    looked and, when ``$COLLBENCH_CSRC`` chose the place, names the variable."""


def csrc_dir() -> Path:
    """Directory holding the kernel sources.

    Order: ``$COLLBENCH_CSRC`` (for trying edited kernels), the installed data package
    ``collbench.csrc``, then ``csrc/`` next to the ``collbench`` package (a source checkout that is
    not installed).

    Raises:
        SourcesNotFound: ``$COLLBENCH_CSRC`` is not a directory, or no sources were found.
    """
    env = os.environ.get(CSRC_ENV)
    if env:
        path = Path(env)
        if not path.is_dir():
            raise SourcesNotFound(f"${CSRC_ENV}={env}: {'not a directory' if path.exists() else 'no such directory'} "
                                  "(it must name a directory holding collbench's csrc/ sources; unset it "
                                  "to use the installed ones)")
        return path
    try:
        path = Path(str(importlib.resources.files("collbench.csrc")))
        if (path / COMMON_HEADER).is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    fallback = Path(__file__).resolve().parents[2] / "csrc"
    if (fallback / COMMON_HEADER).is_file():
        return fallback
    raise SourcesNotFound(
        f"collbench kernel sources not found (looked for {COMMON_HEADER} in the collbench.csrc "
        f"package and in {fallback}); reinstall collbench or set {CSRC_ENV}"
    )


def sources_problem(names: Iterable[str]) -> str | None:
    """Why the sources ``names`` (file names in :func:`csrc_dir`) cannot be read, as one line
    naming ``$COLLBENCH_CSRC`` when it chose the directory; None when they are all there."""
    try:
        where = csrc_dir()
    except SourcesNotFound as exc:
        return str(exc)
    missing = [name for name in names if not (where / name).is_file()]
    if not missing:
        return None
    env = os.environ.get(CSRC_ENV)
    origin = f"${CSRC_ENV}={env}" if env else str(where)
    return (f"{origin}: no {', '.join(missing)} there (it must name a directory holding "
            f"collbench's csrc/ sources{'; unset it to use the installed ones' if env else ''})")


def kernel_files() -> list[Path]:
    """Every ``.cu`` file of the kernel sources, sorted."""
    return sorted(csrc_dir().glob("*.cu"))


@functools.lru_cache(maxsize=None)
def header_constants() -> dict[str, int]:
    """``#define COLLBENCH_<NAME> <int>`` constants of the common header, keyed by ``<NAME>``."""
    text = (csrc_dir() / COMMON_HEADER).read_text()
    found = {
        m.group(1): int(m.group(2), 0)
        for m in re.finditer(r"^#define\s+COLLBENCH_(\w+)\s+(-?(?:0x[0-9a-fA-F]+|\d+))\b", text, re.M)
    }
    required = (
        "MAX_RANKS MAX_BLOCKS IPC_THREADS SIG_FLAGS_WORD SIG_COUNTERS_WORD SIG_ERROR_WORD "
        "ERR_WORDS SIG_BYTES DESC_BYTES ERR_TIMEOUT ERR_BAD_LAUNCH KID_ONE_SHOT KID_TWO_SHOT "
        "KID_ALLGATHER KID_REDUCE_SCATTER"
    ).split()
    missing = [k for k in required if k not in found]
    if missing:
        raise RuntimeError(f"{COMMON_HEADER}: missing constants {missing}")
    return found


@functools.lru_cache(maxsize=None)
def sources_digest() -> str:
    """Short hash of every kernel source file.

    Passed to the compiler as a define: CuPy's kernel cache is keyed on the main source text and
    the options, not on included headers, so without it an edited header would be served stale.
    """
    h = hashlib.sha256()
    for path in sorted(csrc_dir().glob("*.cu*")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def dtypes() -> dict[str, DTypeInfo]:
    """The dtype table, built once: collbench dtype name -> :class:`DTypeInfo`."""
    return _build_dtypes()


def dtype_info(name: str) -> DTypeInfo:
    """Look up a collbench dtype by name, with a clear error for unknown names."""
    table = dtypes()
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(table)}") from None


def check_op(op: str) -> str:
    """Validate a reduction op name."""
    if op not in OPS:
        raise ValueError(f"unknown reduction op {op!r}; expected one of {', '.join(OPS)}")
    return op
