"""The data types and reduction operators collbench measures, with nccl-tests' names."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import UsageError


@dataclass(frozen=True)
class DType:
    """One element type: our canonical name, the numpy dtype and nccl-tests' spelling."""

    name: str
    numpy: np.dtype
    nccl_tests_name: str

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def is_float(self) -> bool:
        return self.name.startswith(("float", "bfloat"))

    @property
    def is_signed(self) -> bool:
        return self.is_float or self.name.startswith("int")


DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("int8", np.dtype(np.int8), "int8"),
    DType("uint8", np.dtype(np.uint8), "uint8"),
    DType("int32", np.dtype(np.int32), "int32"),
    DType("uint32", np.dtype(np.uint32), "uint32"),
    DType("int64", np.dtype(np.int64), "int64"),
    DType("uint64", np.dtype(np.uint64), "uint64"),
    DType("float16", np.dtype(np.float16), "half"),
    DType("bfloat16", np.dtype(ml_dtypes.bfloat16), "bfloat16"),
    DType("float32", np.dtype(np.float32), "float"),
    DType("float64", np.dtype(np.float64), "double"),
)}

# nccl-tests and common short spellings, so flags copied from an nccl-tests command line work.
_DTYPE_ALIASES = {"half": "float16", "fp16": "float16", "bf16": "bfloat16", "float": "float32",
                  "fp32": "float32", "double": "float64", "fp64": "float64", "char": "int8",
                  "int": "int32", "uint": "uint32"}

OPS: tuple[str, ...] = ("sum", "prod", "max", "min", "avg")


def parse_dtypes(text: str) -> tuple[DType, ...]:
    """Parse ``-d``: one name, a comma list, or ``all``."""
    if text.strip().lower() == "all":
        return tuple(DTYPES.values())
    result = []
    for part in text.split(","):
        key = part.strip().lower()
        key = _DTYPE_ALIASES.get(key, key)
        if key not in DTYPES:
            raise UsageError(f"unknown datatype {part.strip()!r} (known: {', '.join(DTYPES)}, all)")
        result.append(DTYPES[key])
    return tuple(dict.fromkeys(result))


def parse_ops(text: str) -> tuple[str, ...]:
    """Parse ``-o``: one op, a comma list, or ``all``."""
    if text.strip().lower() == "all":
        return OPS
    result = []
    for part in text.split(","):
        key = part.strip().lower()
        if key not in OPS:
            raise UsageError(f"unknown reduction op {part.strip()!r} (known: {', '.join(OPS)}, all)")
        result.append(key)
    return tuple(dict.fromkeys(result))
