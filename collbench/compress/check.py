"""The harness's side of a compressed algorithm: its inputs, its validation, its row's columns.

:class:`CompressedCheck` replaces the harness's exact-pattern fill and validation for one
measurement (``run/harness.py`` calls it where it would call its own). Per validation round,
with fresh inputs (:mod:`.inputs`, seeded per rank and round) and a poisoned output:

* the exact dense sum (float64, MPI_Allreduce on the control communicator) gives every
  algorithm's error: relative L2 and max abs over all ranks' outputs;
* ``#wrong`` depends on what the algorithm defines:
    - ``topk_allgather``, ``topk_rd``: exactly the sum of every rank's selected entries
      (inputs on a grid make it exact in the dtype), compared bit for bit;
    - ``gtopk``: exactly its own definition, replayed by :func:`.reference.gtopk` from every
      rank's selection, bit for bit;
    - ``quant_ring``, ``quant_oneshot``: the elements outside the bound of :mod:`.bounds`;
    - ``powersgd``: the elements farther than ``2⁻¹⁰·max|R| + ½ ulp`` from the float64
      reference ``R`` (:func:`.reference.powersgd`) -- float32 arithmetic and a different
      summation order, nothing else;
* an out-of-place run must leave its input unchanged (changed elements count as wrong).

Every rank computes its own ``#wrong``; the sum goes to rank 0 as for every other algorithm.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import validation
from ..backends.base import Backend, OpRequest, Placement, PreparedOp
from ..results.files import Row
from . import bounds, reference, sparse
from .backend import runner_of
from .inputs import make_input
from .names import family
from .options import parse

_POISON_BYTE = 0xA5
POWERSGD_TOLERANCE = 2.0 ** -10


class CompressedCheck:
    """One measurement of a compressed algorithm, seen from the harness (collective: every
    rank makes one and calls its methods in the same order).

    Args:
        request, prepared: what the backend prepared.
        backend: for its buffers (write/read) and timer.
        ctrl: the control communicator (never the measured one).
        checks: validation rounds (``-c``).
        watchdog, timeout: the harness's deadline for each validation run.
    """

    def __init__(self, request: OpRequest, prepared: PreparedOp, backend: Backend, ctrl: Any,
                 checks: int, watchdog: Any, timeout: float) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.request, self.prepared, self.backend, self.ctrl = request, prepared, backend, ctrl
        self.checks, self.watchdog, self.timeout = checks, watchdog, timeout
        self.rank, self.nranks = ctrl.Get_rank(), ctrl.Get_size()
        self.name = request.algorithm
        self.family = family(self.name)
        self.runner = runner_of(prepared)
        self.options = parse(getattr(backend, "algorithm_options", {}) or {})
        self.errors: dict[str, float | None] = {}
        self.stats: list[dict[str, Any]] | None = None

    # -- inputs -----------------------------------------------------------------------------------

    def fill(self, seed: int) -> np.ndarray:
        """Write this rank's input for ``seed`` (0: the timed runs) and return it."""
        x = make_input(self.family, self.request.dtype, self.nranks, self.rank, self.request.count, seed)
        self.backend.write(self.prepared.input, x)
        return x

    # -- validation ---------------------------------------------------------------------------------

    def validate(self) -> int | None:
        """Gather what the last timed run sent, then run the validation rounds; returns the
        total of wrong elements on rank 0 (None when ``-c 0``; other ranks: None)."""
        self.stats = self.ctrl.gather(self._stats(), root=0)
        if self.checks <= 0:
            return None
        wrong = 0
        for check in range(self.checks):
            wrong += self._round(check + 1)
            if self.ctrl.allreduce(wrong, op=self.MPI.SUM) > 0:
                break  # like nccl-tests: stop at the first failing round
        return self.ctrl.reduce(wrong, op=self.MPI.SUM, root=0)

    def _stats(self) -> dict[str, Any]:
        r = self.runner
        if r is None:
            return {"sent": None, "facts": {}, "quantizations": 0}
        return {"sent": r.sent_bytes, "facts": dict(r.facts()), "quantizations": len(r.stages())}

    def _round(self, seed: int) -> int:
        req, out = self.request, self.prepared.output
        poison = np.zeros(np.shape(out), dtype=req.dtype.numpy)
        poison.view(np.uint8)[...] = _POISON_BYTE
        self.backend.write(out, poison)
        x = self.fill(seed)
        self.watchdog.arm(self.timeout)
        self.backend.timer.once(self.prepared.run)
        self.watchdog.disarm()
        got = self.backend.read(out)
        exact = np.empty(x.size, dtype=np.float64)
        self.ctrl.Allreduce(x.astype(np.float64), exact, op=self.MPI.SUM)
        self._measure_error(got, exact)
        wrong = self._wrong(x, got, exact)
        if req.placement is Placement.OUT_OF_PLACE:
            wrong += validation.count_wrong(self.backend.read(self.prepared.input), x, req.dtype, None)
        return wrong

    def _measure_error(self, got: np.ndarray, exact: np.ndarray) -> None:
        """Relative L2 and max abs error against the exact sum, over every rank's output."""
        diff = got.astype(np.float64) - exact
        finite = bool(np.isfinite(diff).all())
        local = np.array([float(diff @ diff) if finite else 0.0, float(exact @ exact),
                          float(np.abs(diff).max()) if finite and diff.size else 0.0,
                          0.0 if finite else 1.0])
        total = np.empty_like(local)
        self.ctrl.Allreduce(local[:2].copy(), total[:2], op=self.MPI.SUM)
        self.ctrl.Allreduce(local[2:].copy(), total[2:], op=self.MPI.MAX)
        if total[3] > 0:   # a NaN or inf somewhere: no number to report (and #wrong counts it)
            rel, worst = None, None
        else:
            rel = math.sqrt(total[0] / total[1]) if total[1] > 0 else (0.0 if total[0] == 0 else None)
            worst = float(total[2])
        previous = self.errors
        self.errors = {"rel_l2": _max(previous.get("rel_l2"), rel, "rel_l2" in previous),
                       "max_abs": _max(previous.get("max_abs"), worst, "max_abs" in previous)}

    def _wrong(self, x: np.ndarray, got: np.ndarray, exact: np.ndarray) -> int:
        name, dtype, n = self.name, self.request.dtype, x.size
        if name in ("topk_allgather", "topk_rd"):
            idx = sparse.top_k(x, self.options.k(n))
            mine = np.zeros(n, dtype=np.float64)
            mine[idx] = x[idx]
            total = np.empty_like(mine)
            self.ctrl.Allreduce(mine, total, op=self.MPI.SUM)
            return validation.count_wrong(got, total.astype(dtype.numpy), dtype, "sum")
        if name == "gtopk":
            k = self.options.k(n)
            idx = sparse.top_k(x, k)
            selections = self.ctrl.allgather((idx, x[idx]))
            expected = reference.gtopk(selections, n, k, dtype.numpy)
            return validation.count_wrong(got, expected, dtype, "sum")
        got64 = got.astype(np.float64)
        if self.family == "quantized":
            block = self.options.block_for(n)
            abs_sum = np.empty(n, dtype=np.float64)
            self.ctrl.Allreduce(np.abs(x.astype(np.float64)), abs_sum, op=self.MPI.SUM)
            mine = bounds.block_absmax(x, block)
            absmax_sum = np.empty_like(mine)
            self.ctrl.Allreduce(mine, absmax_sum, op=self.MPI.SUM)
            stages = self.runner.stages() if self.runner else ()
            limit = bounds.quantized_bound(abs_sum, absmax_sum, self.options.format, block, stages,
                                           self.nranks, dtype.name)
            return int(np.count_nonzero(~(np.abs(got64 - exact) <= limit)))
        # powersgd: its float64 reference from the exact sum
        expected = reference.powersgd(exact, self.options.matrix(n), self.options.rank_for(n))
        rel_out, abs_out = bounds.output_rounding(dtype.name)
        limit = (POWERSGD_TOLERANCE * float(np.abs(expected).max(initial=0.0))
                 + rel_out * np.abs(expected) + abs_out)
        return int(np.count_nonzero(~(np.abs(got64 - expected) <= limit)))

    # -- the row ------------------------------------------------------------------------------------

    def extend(self, row: Row | None) -> Row | None:
        """Rank 0's row with the compressed columns (other ranks: None)."""
        if row is None or self.stats is None:
            return row
        return with_compression(row, self.stats, self.errors)


def _max(old: float | None, new: float | None, seen: bool) -> float | None:
    """The worse of two rounds' errors; None (not finite) wins."""
    if not seen:
        return new
    if old is None or new is None:
        return None
    return max(old, new)


def dense_ring_bytes(count: int, itemsize: int, nranks: int) -> float:
    """Bytes a dense (ring) allreduce sends per rank: 2·(p - 1)/p of the vector."""
    return 2 * (nranks - 1) * count * itemsize / nranks if nranks > 1 else 0.0


def with_compression(row: Row, stats: list[dict[str, Any]], errors: dict[str, float | None]) -> Row:
    """``row`` with bytes, compression ratio, errors and both bus bandwidths.

    ``busbw_gbps`` becomes what the wire carried: the most bytes any rank sent / time (for a
    dense ring this is exactly nccl-tests' busbw). ``dense_busbw_gbps`` is nccl-tests' busbw
    of the same size and time: the bus bandwidth a dense allreduce would need to be as fast.
    """
    sent_values = [s["sent"] for s in stats if s.get("sent") is not None]
    sent = max(sent_values) if sent_values else None
    dense = dense_ring_bytes(row.count, _itemsize(row), row.nranks)
    facts = dict(stats[0].get("facts") or {})
    steps = [s["facts"].get("dense_from_step") for s in stats if s.get("facts")]
    if "dense_from_step" in facts:  # topk_rd: the earliest step at which any rank went dense
        known = [v for v in steps if v is not None]
        facts["dense_from_step"] = min(known) if known else None
    if stats[0].get("quantizations"):
        facts["quantizations"] = stats[0]["quantizations"]
    if sent_values:
        facts["sent_bytes_mean"] = round(sum(sent_values) / len(sent_values), 1)
    seconds = row.time_us * 1e-6
    wire = sent / seconds / 1e9 if sent is not None and seconds > 0 else row.busbw_gbps
    return dataclasses.replace(
        row, busbw_gbps=wire, sent_bytes=sent,
        compression=(dense / sent) if sent else None,
        err_rel_l2=errors.get("rel_l2"), err_max_abs=errors.get("max_abs"),
        dense_busbw_gbps=row.busbw_gbps, compress=facts or None)


def _itemsize(row: Row) -> int:
    from ..dtypes import DTYPES

    return DTYPES[row.dtype].itemsize
