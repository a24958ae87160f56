"""NCCL as a library: discovery, version, and the dtype/op tables (built once).

Discovery works without a GPU: libnccl from the nvidia-nccl wheels (or the system) loads and
answers ncclGetVersion on any machine, which lets CI check the install.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import lru_cache
from pathlib import Path

# ncclDataType_t and ncclRedOp_t values from nccl.h (stable since NCCL 2.10; bfloat16 since 2.10).
NCCL_DTYPES = {"int8": 0, "uint8": 1, "int32": 2, "uint32": 3, "int64": 4, "uint64": 5,
               "float16": 6, "float32": 7, "float64": 8, "bfloat16": 9}
NCCL_OPS = {"sum": 0, "prod": 1, "max": 2, "min": 3, "avg": 4}


def library_candidates() -> list[Path]:
    """Where libnccl may be: NCCL_LIB_PATH/NCCL_HOME, the nvidia-nccl wheels, the loader path."""
    found: list[Path] = []
    for env in ("COLLBENCH_NCCL_LIBRARY",):
        if os.environ.get(env):
            found.append(Path(os.environ[env]))
    for env in ("NCCL_HOME", "NCCL_ROOT", "NCCL_DIR"):
        if os.environ.get(env):
            found += [Path(p) for p in glob.glob(os.path.join(os.environ[env], "lib*", "libnccl.so*"))]
    try:
        import nvidia.nccl  # the nvidia-nccl-cu12 / -cu13 wheels

        for base in nvidia.nccl.__path__:
            found += [Path(p) for p in sorted(glob.glob(os.path.join(base, "lib", "libnccl.so*")))]
    except ImportError:
        pass
    found.append(Path("libnccl.so.2"))  # whatever the dynamic loader finds
    return found


@lru_cache(maxsize=1)
def load() -> tuple[ctypes.CDLL, str]:
    """Load libnccl; returns (library, path). Raises OSError with every place tried."""
    errors = []
    for candidate in library_candidates():
        try:
            return ctypes.CDLL(str(candidate)), str(candidate)
        except OSError as exc:
            errors.append(f"{candidate}: {exc}")
    raise OSError("libnccl not found; install collbench[cuda12] or collbench[cuda13] "
                  "(nvidia-nccl wheels) or set COLLBENCH_NCCL_LIBRARY/NCCL_HOME (this search only finds the "
                  "version, while the benchmark uses the libnccl CuPy loads). Tried: " + "; ".join(errors))


def version_code() -> int:
    """NCCL_VERSION_CODE of the loaded library (e.g. 22703 for 2.27.3)."""
    library, _ = load()
    value = ctypes.c_int(0)
    status = library.ncclGetVersion(ctypes.byref(value))
    if status != 0:
        raise OSError(f"ncclGetVersion failed with status {status}")
    return value.value


def version_string(code: int) -> str:
    """2.27.3 from 22703 (NCCL ≥ 2.9 encodes major*10000 + minor*100 + patch)."""
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"
