"""The names of the compressed allreduce algorithms, their options, and the family keyword.

This module is imported by the command line and the plan (``execute/programs.py``,
``run/harness.py``), so it holds names only: no numpy, no MPI.
"""

from __future__ import annotations

from typing import Iterable

from ..algorithms import Collective

#: ``--algo all-compressed``: every compressed algorithm that applies (like ``all`` for the
#: registry's exact ones, which ``all`` keeps meaning: compressed results are not exact).
ALL_COMPRESSED = "all-compressed"

#: name -> (family, one line for docs and errors)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "topk_allgather": ("sparse", "top-k sparsification, allgather of (index, value) pairs, local sum"),
    "topk_rd": ("sparse", "top-k, SparCML recursive doubling on sparse vectors, dense past a fill"),
    "gtopk": ("sparse", "global top-k: tree reduction keeping the top k of each merge, then broadcast"),
    "quant_ring": ("quantized", "ring reduce-scatter requantizing at every hop, allgather of quantized shards"),
    "quant_oneshot": ("quantized", "two-shot: direct quantized reduce-scatter, one requantization, allgather"),
    "powersgd": ("lowrank", "PowerSGD rank-r approximation: one power iteration, two small allreduces"),
}

#: the registry's ring under the name the issue uses; the dense baseline is never duplicated
ALIASES = {"dense_ring": "ring"}

#: the only collective they implement
COLLECTIVE = Collective.ALLREDUCE

#: every option any compressed algorithm reads; schedules of the registry ignore these (one
#: ``-O`` list serves a whole run, e.g. ``--algo topk_rd,ring -O density=0.01``)
OPTION_KEYS = ("density", "switch", "format", "block", "rank", "shape")

#: a row's ``executor``: a compressed runner (collbench/compress/runners over mpi4py on the mpi
#: backend, collbench/compress/gpu_runners over NCCL on the nccl backend)
ROW_EXECUTOR = "compressed"

def is_compressed(name: str) -> bool:
    return name in ALGORITHMS


def family(name: str) -> str:
    return ALGORITHMS[name][0]


def canonical(name: str) -> str | None:
    """The canonical name for a compressed name or alias (``dense_ring`` -> ``ring``), else None."""
    key = name.strip().lower().replace("-", "_")
    if key in ALGORITHMS:
        return key
    return ALIASES.get(key)


def expand(names: Iterable[str]) -> list[str]:
    """``names`` with ``all-compressed`` replaced by every compressed algorithm (order kept)."""
    out: list[str] = []
    for name in names:
        out += list(ALGORITHMS) if name == ALL_COMPRESSED else [name]
    return list(dict.fromkeys(out))


def strip_options(options: dict[str, object]) -> dict[str, object]:
    """``options`` without the compressed algorithms' keys (what a registry schedule gets)."""
    return {k: v for k, v in options.items() if k not in OPTION_KEYS}
