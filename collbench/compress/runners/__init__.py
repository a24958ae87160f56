"""One runner per compressed algorithm (see each module's docstring for the algorithm)."""

from __future__ import annotations

from .base import CompressedRunner
from .gtopk import GlobalTopk
from .powersgd import PowerSGD
from .quant_oneshot import QuantOneshot
from .quant_ring import QuantRing
from .topk_allgather import TopkAllgather
from .topk_rd import TopkRecursiveDoubling

RUNNERS: dict[str, type[CompressedRunner]] = {
    cls.name: cls for cls in (TopkAllgather, TopkRecursiveDoubling, GlobalTopk, QuantRing,
                              QuantOneshot, PowerSGD)
}

__all__ = ["CompressedRunner", "RUNNERS"]
