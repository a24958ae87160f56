"""The ``-O`` options of the compressed algorithms: parsing, defaults, and the one-line errors.

A run has one ``-O`` list for all its algorithms, so every compressed algorithm accepts every
key of :data:`~.names.OPTION_KEYS` and reads the ones it needs. Mistakes that no size can fix
(a density outside (0, 1], an unknown format) and explicit values that do not fit a size of
the sweep (a block larger than the count, a rank larger than the matrix) are a
:class:`UsageError` before anything runs (:func:`check_sweep`); defaults adapt to small counts
instead (a block of 256 becomes the count, a rank of 4 the matrix's smaller side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..dtypes import DType
from ..errors import UsageError
from .names import ALGORITHMS, OPTION_KEYS, family

DEFAULT_DENSITY = 0.01
DEFAULT_BLOCK = 256
DEFAULT_RANK = 4
INDEX_BYTES = 4  # (index, value) pairs carry int32 indices: counts stay below 2**31

#: quantized formats: name -> (bits per element, largest magnitude of the format)
FORMATS = {"int8": (8, 127.0), "fp8": (8, 448.0)}
_FORMAT_ALIASES = {"e4m3": "fp8", "fp8_e4m3": "fp8", "float8_e4m3": "fp8", "float8_e4m3fn": "fp8"}
#: what each family can reduce: floating point only (gradients). Quantization stops at 32 bits:
#: its scales are float32 and a float64 value can exceed their range.
_DTYPES = {"sparse": ("float16", "bfloat16", "float32", "float64"),
           "lowrank": ("float16", "bfloat16", "float32", "float64"),
           "quantized": ("float16", "bfloat16", "float32")}


@dataclass(frozen=True)
class Options:
    """Parsed options; None means "the default for this count" (see the accessors)."""

    density: float = DEFAULT_DENSITY
    switch: float | None = None      # topk_rd: fill at which vectors go dense (None: break-even)
    format: str = "int8"
    block: int | None = None
    rank: int | None = None
    shape: tuple[int, int] | None = None

    def k(self, count: int) -> int:
        """Entries each rank keeps: ceil(density × count), at least 1 (0 for an empty vector)."""
        return min(count, max(1, math.ceil(self.density * count))) if count else 0

    def switch_fill(self, itemsize: int) -> float:
        """topk_rd's dense switch: by default the fill where (index, value) pairs cost as many
        bytes as the dense vector, itemsize / (4 + itemsize) (0.5 for float32)."""
        return self.switch if self.switch is not None else itemsize / (INDEX_BYTES + itemsize)

    def block_for(self, count: int) -> int:
        return self.block if self.block is not None else max(1, min(DEFAULT_BLOCK, count))

    def matrix(self, count: int) -> tuple[int, int]:
        """PowerSGD's matrix: the ``shape`` option, else the nearest square (rows = ceil(√count),
        the last row zero-padded)."""
        if self.shape is not None:
            return self.shape
        rows = max(1, math.isqrt(max(count - 1, 0)) + 1) if count > 1 else 1
        return rows, max(1, -(-count // rows))

    def rank_for(self, count: int) -> int:
        m, n = self.matrix(count)
        return self.rank if self.rank is not None else max(1, min(DEFAULT_RANK, m, n))

    @property
    def qmax(self) -> float:
        return FORMATS[self.format][1]

    def record(self, name: str, count: int, itemsize: int) -> dict[str, object]:
        """What one algorithm used at ``count`` (for the row)."""
        fam = family(name)
        if fam == "sparse":
            info: dict[str, object] = {"density": self.density, "k": self.k(count)}
            if name == "topk_rd":
                info["switch"] = self.switch_fill(itemsize)
            return info
        if fam == "quantized":
            return {"format": self.format, "block": self.block_for(count)}
        m, n = self.matrix(count)
        return {"rank": self.rank_for(count), "shape": f"{m}x{n}"}


def _number(key: str, value: object, kind: type) -> float | int:
    try:
        number = kind(value) if not isinstance(value, str) else kind(value.strip())
    except (TypeError, ValueError):
        raise UsageError(f"-O {key}={value}: expected {'a whole number' if kind is int else 'a number'}"
                         ) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise UsageError(f"-O {key}={value}: expected a finite number")
    return number


def parse(options: Mapping[str, object]) -> Options:
    """Options from ``-O`` (values as the command line gives them: ints or text).

    Raises:
        UsageError: a value out of range or of the wrong kind (one line, naming the option).
    """
    fields: dict[str, object] = {}
    if "density" in options:
        d = float(_number("density", options["density"], float))
        if not 0 < d <= 1:
            raise UsageError(f"-O density={options['density']}: must be in (0, 1] (the fraction of "
                             "elements each rank keeps; 1 keeps all)")
        fields["density"] = d
    if "switch" in options:
        s = float(_number("switch", options["switch"], float))
        if not 0 < s <= 1:
            raise UsageError(f"-O switch={options['switch']}: must be in (0, 1] (the fill of a merged "
                             "vector at which topk_rd goes dense)")
        fields["switch"] = s
    if "format" in options:
        text = str(options["format"]).strip().lower()
        text = _FORMAT_ALIASES.get(text, text)
        if text not in FORMATS:
            raise UsageError(f"-O format={options['format']}: unknown format (known: int8, fp8 "
                             "(fp8 e4m3))")
        fields["format"] = text
    for key in ("block", "rank"):
        if key in options:
            v = int(_number(key, options[key], int))
            if v < 1:
                raise UsageError(f"-O {key}={options[key]}: must be at least 1")
            fields[key] = v
    if "shape" in options:
        text = str(options["shape"]).lower().replace("×", "x")
        try:
            m, n = (int(part) for part in text.split("x"))
            if m < 1 or n < 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"-O shape={options['shape']}: expected ROWSxCOLS, e.g. 2048x1024") from None
        fields["shape"] = (m, n)
    return Options(**fields)  # type: ignore[arg-type]


def dtype_problem(name: str, options: Options, dtype: DType, op: str | None) -> str | None:
    """Why ``name`` cannot reduce ``dtype`` with ``op`` (skipped under all-compressed), or None."""
    fam = family(name)
    if op != "sum":
        return f"{name} sums (compressed gradients); op {op} is not supported"
    allowed = _DTYPES[fam]
    if dtype.name not in allowed:
        if fam == "quantized":
            return (f"{name}: format {options.format} cannot hold {dtype.name} values: quantized "
                    f"allreduce takes {', '.join(allowed)} (per-block float32 scales; integers "
                    "are not quantized)")
        return f"{name} compresses floating-point data ({', '.join(allowed)}), not {dtype.name}"
    return None


def size_problem(name: str, options: Options, count: int) -> str | None:
    """Why an explicit option does not fit ``count`` elements, or None."""
    fam = family(name)
    if fam == "quantized" and options.block is not None and options.block > count:
        return f"{name}: block={options.block} is larger than the count ({count} elements)"
    if fam == "lowrank":
        m, n = options.matrix(count)
        if options.shape is not None and m * n != count:
            return f"{name}: shape={m}x{n} holds {m * n} elements, not the count {count}"
        if options.rank is not None and options.rank > min(m, n):
            return (f"{name}: rank={options.rank} is larger than the {m}x{n} matrix allows "
                    f"({min(m, n)})")
    return None


def check_sweep(names: Iterable[str], options: Mapping[str, object], sizes: Iterable[int],
                dtypes: Iterable[DType]) -> Options | None:
    """Validate the options of a run's compressed algorithms against its whole sweep, once,
    before anything runs (allreduce: count = size / itemsize).

    Returns the parsed options (None when no compressed algorithm is requested).

    Raises:
        UsageError: the first problem, as one line.
    """
    wanted = [n for n in names if n in ALGORITHMS]
    if not wanted:
        return None
    unknown = [k for k in options if k not in OPTION_KEYS and not _registry_key(k)]
    if unknown:
        raise UsageError(f"-O {unknown[0]}: unknown option (compressed algorithms take "
                         f"{', '.join(OPTION_KEYS)})")
    parsed = parse(options)
    for name in wanted:
        for dtype in dtypes:
            for size in sizes:
                count = size // dtype.itemsize
                if count == 0:
                    continue
                problem = size_problem(name, parsed, count)
                if problem:
                    raise UsageError(f"{problem} at {size} B {dtype.name}; choose sizes or the option "
                                     "so that every size fits")
    return parsed


def _registry_key(key: str) -> bool:
    """Whether a registry schedule accepts ``key`` (then the compressed ones ignore it)."""
    from ..algorithms.registry import algorithms

    return any(key in impl.defaults for a in algorithms() for impl in a.implementations.values())
