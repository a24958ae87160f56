"""The α-β-γ cost of the compressed allreduces (collbench/compress), and where they beat dense.

Communication reuses the model of the exact schedules wherever a compressed algorithm moves
data the way one of them does, only fewer bytes: ``topk_allgather`` is a ring allgather of
k (index, value) pairs; ``quant_ring`` a ring reduce-scatter plus a ring allgather of packed
shards (b/8 + 4/block bytes per element); ``quant_oneshot`` the same with the direct
algorithms; ``powersgd`` two allreduces of (m + n)·r float32 values (the fastest exact
algorithm for that size, as a library would pick). ``topk_rd`` and ``gtopk`` have their own step
sums below (message sizes change from step to step).

The dense baseline is the fastest of the registry's exact allreduces at each size and scale
(ring, recursive doubling, Rabenseifner, trees, direct, hierarchical): compression has to beat
the best dense algorithm, not only the ring.

Local work is what compression adds, priced as memory traffic at the profile's HBM rate
(2 × ``copy_gbps``: a copy reads and writes each byte) -- these kernels are memory-bound:

* top-k selection: a radix select, one pass over the vector per byte of the key (itemsize
  passes), plus writing the k pairs;
* scatter-adding m pairs into a dense vector: one 32-byte sector read and written per pair
  (random access), plus writing the dense output once;
* merging two sparse vectors: reading both and writing the result;
* quantizing n values: two reads (absmax, then scale) and the write of the codes;
  dequantize-and-add: reading the codes and the float32 accumulator, writing it back;
* PowerSGD: two reads of the matrix (M Q and Mᵀ P̂) and the write of the result, or its
  6·m·n·r + 2·m·r² flops if that takes longer, at :data:`FLOPS_PER_BYTE` flops per byte of
  HBM bandwidth (A100: 19.5 TFLOP/s FP32 / 1555 GB/s = 12.5; profiles carry no flop rate).

Sparse fill: after merging the top k of 2^j ranks the fill is ``1 - (1 - d)^(2^j)``
(independent supports; real gradients overlap more, which only helps sparse algorithms).

:func:`crossovers` answers "at what density, bit width or rank does compression beat the
best dense allreduce", per node count and size; ``collbench model predict --compressed``
prints it (:func:`format_crossovers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from tabulate import tabulate

from ...algorithms import Collective, Layout
from ...algorithms.registry import algorithms_for
from ...sizes import format_bytes
from .cost import Cost, Link, Machine
from .predict import Model
from .profile import Profile

INDEX_BYTES = 4
SECTOR = 32
FLOPS_PER_BYTE = 12.5
NAMES = ("topk_allgather", "topk_rd", "gtopk", "quant_ring", "quant_oneshot", "powersgd")


@dataclass(frozen=True)
class Setting:
    """What the compressed algorithms are asked to do (the ``-O`` options of a run)."""

    density: float = 0.01
    bits: float = 8.0          # int8 and fp8 e4m3 both use 8
    block: int = 256
    rank: int = 4
    switch: float | None = None


def matrix_shape(n: int) -> tuple[int, int]:
    """PowerSGD's default matrix: the nearest square (collbench.compress.options.Options.matrix)."""
    rows = max(1, math.isqrt(max(n - 1, 0)) + 1)
    return rows, max(1, -(-n // rows))


def _add(*costs: Cost) -> Cost:
    return Cost(sum(c.alpha for c in costs), sum(c.beta for c in costs),
                sum(c.local for c in costs), sum(c.steps for c in costs))


class CompressedModel:
    """Costs of the compressed algorithms and of the dense ring on one machine profile.

    Args:
        profile: the machine (α, β per link level, NICs, HBM copy rate).
        ranks_per_node: g; ranks are laid out in blocks of g per node.
    """

    def __init__(self, profile: Profile, ranks_per_node: int) -> None:
        self.profile = profile
        self.g = max(1, ranks_per_node)
        self.model = Model(profile)
        self.machine: Machine = profile.machine("float32")
        rate = profile.copy_gbps * 1e9 * 2 if profile.copy_gbps > 0 else profile.reduce_rate(None) * 3
        self._mem = 1.0 / rate if rate > 0 else 0.0
        self._dense: dict[tuple, tuple[Cost, str]] = {}

    # -- building blocks -------------------------------------------------------------------------

    def _layout(self, p: int) -> Layout | None:
        return Layout.blocked(p, self.g) if p > self.g else None

    def mem(self, nbytes: float) -> Cost:
        """Local, memory-bound work touching ``nbytes`` bytes."""
        return Cost(0.0, 0.0, nbytes * self._mem)

    def compute(self, nbytes: float, flops: float) -> Cost:
        """Local work: memory traffic or arithmetic, whichever takes longer."""
        return Cost(0.0, 0.0, max(nbytes, flops / FLOPS_PER_BYTE) * self._mem)

    def _registry(self, collective: Collective, algorithm: str, p: int, count: int, itemsize: int,
                  dtype: str = "float32", local: bool = False) -> Cost:
        """A registry schedule's communication (its local work too when ``local``)."""
        result = self.model.cost(collective, algorithm, p, max(count, 0), itemsize, dtype,
                                 self._layout(p))
        if result is None:
            raise ValueError(f"the model has no {algorithm} {collective.value} for {p} ranks")
        cost = result[0]
        return cost if local else replace(cost, local=0.0)

    def _message(self, nbytes: float, inter: bool, share: int) -> Cost:
        """One point-to-point step of ``nbytes`` (each side), intra- or inter-node."""
        link: Link = self.machine.inter if inter else self.machine.intra
        alpha, beta = link.regime(nbytes)
        factor = self.machine.nic_factor(share) if inter else 1.0
        return Cost(alpha, nbytes * beta * factor, 0.0, 1)

    def select(self, n: int, k: int, itemsize: int) -> Cost:
        return self.mem(itemsize * n * itemsize + k * (INDEX_BYTES + itemsize))

    def scatter(self, entries: float) -> Cost:
        return self.mem(2 * SECTOR * entries)

    # -- dense baseline --------------------------------------------------------------------------

    def dense(self, p: int, count: int, itemsize: int = 4, dtype: str = "float32") -> tuple[Cost, str]:
        """The fastest exact allreduce of the registry (local reductions included), and its name."""
        key = (p, count, itemsize, dtype)
        if key not in self._dense:
            best: tuple[Cost, str] | None = None
            for algorithm in algorithms_for(Collective.ALLREDUCE, include_native=False):
                result = self.model.cost(Collective.ALLREDUCE, algorithm.name, p, count, itemsize,
                                         dtype, self._layout(p))
                if result is not None and (best is None or result[0].total < best[0].total):
                    best = (result[0], algorithm.name)
            if best is None:
                raise ValueError(f"the model has no allreduce for {p} ranks")
            self._dense[key] = best
        return self._dense[key]

    # -- the compressed algorithms ---------------------------------------------------------------

    def cost(self, name: str, p: int, count: int, itemsize: int = 4,
             setting: Setting = Setting()) -> Cost:
        """Predicted cost of compressed algorithm ``name`` for ``count`` elements per rank."""
        n, s = count, itemsize
        if name in ("topk_allgather", "topk_rd", "gtopk"):
            k = min(n, max(1, math.ceil(setting.density * n)))
            pair = INDEX_BYTES + s
            if name == "topk_allgather":
                comm = self._registry(Collective.ALLGATHER, "ring", p, k, pair) if p > 1 else Cost(0, 0, 0)
                return _add(comm, self.select(n, k, s), self.scatter(p * k), self.mem(n * s))
            if name == "topk_rd":
                return self._topk_rd(p, n, s, k, setting)
            return self._gtopk(p, n, s, k)
        if name in ("quant_ring", "quant_oneshot"):
            return self._quant(name, p, n, s, setting)
        if name == "powersgd":
            return self._powersgd(p, n, s, setting)
        raise ValueError(f"no model for {name!r} (known: {', '.join(NAMES)})")

    def _topk_rd(self, p: int, n: int, s: int, k: int, setting: Setting) -> Cost:
        switch = setting.switch if setting.switch is not None else s / (INDEX_BYTES + s)
        pof2 = 1 << (p.bit_length() - 1)
        d = k / n
        parts = [self.select(n, k, s), self.mem(n * s)]

        def message(fill: float) -> float:
            return n * s if fill > switch else fill * n * (INDEX_BYTES + s)

        if p != pof2:  # the fold: a step before (one rank's top k) and after (the result)
            parts.append(self._message(message(d), inter=self.g < 2, share=self.g))
        mask, fill = 1, d
        while mask < pof2:
            nbytes = message(fill)
            parts.append(self._message(nbytes, inter=mask >= self.g, share=self.g))
            parts.append(self.mem(2 * nbytes + min(n * s, 2 * nbytes)))  # merge (or dense add)
            fill = 1 - (1 - d) ** (2 * mask)
            mask <<= 1
        if p != pof2:
            parts.append(self._message(message(fill), inter=self.g < 2, share=self.g))
        return _add(*parts)

    def _gtopk(self, p: int, n: int, s: int, k: int) -> Cost:
        pair = k * (INDEX_BYTES + s)
        parts = [self.select(n, k, s), self.scatter(k), self.mem(n * s)]
        mask = 1
        while mask < p:   # reduce (merge, reselect from 2k) and broadcast: one message each way
            inter = mask >= self.g
            parts += [self._message(pair, inter, share=1), self._message(pair, inter, share=1),
                      self.mem(4 * pair), self.select(2 * k, k, s)]   # merge 2k, keep k
            mask <<= 1
        return _add(*parts)

    def _quant(self, name: str, p: int, n: int, s: int, setting: Setting) -> Cost:
        per = setting.bits / 8 + 4 / setting.block          # bytes per element on the wire
        shard = -(-n // p)
        packed = math.ceil(shard * per)
        algo = "ring" if name == "quant_ring" else "direct"
        if p > 1:
            comm = _add(self._registry(Collective.REDUCE_SCATTER, algo, p, packed, 1, "uint8"),
                        self._registry(Collective.ALLGATHER, algo, p, packed, 1, "uint8"))
        else:
            comm = Cost(0, 0, 0)
        quantize = self.mem(2 * 4 * shard + shard * per)
        dequant_add = self.mem(shard * per + 2 * 4 * shard)
        if name == "quant_ring":
            local = [quantize, dequant_add] * (p - 1)
        else:  # every other shard quantized once, p - 1 dequantize-adds at the owner
            local = [quantize] * (p - 1) + [dequant_add] * (p - 1)
        local += [quantize, self.mem(n * per + n * s), self.mem(n * (s + 4))]
        return _add(comm, *local)

    def _powersgd(self, p: int, n: int, s: int, setting: Setting) -> Cost:
        rows, cols = matrix_shape(n)
        r = min(setting.rank, rows, cols)
        comm = Cost(0, 0, 0)
        if p > 1:   # the library's fastest allreduce for each small message, communication only
            comm = _add(*(replace(self.dense(p, count * r, 4)[0], local=0.0) for count in (rows, cols)))
        return _add(comm, self.compute(3 * n * s, 6 * rows * cols * r + 2 * rows * r * r))


# -- crossovers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crossover:
    """For one node count and size: the best dense time, and per algorithm the largest setting that
    still beats it (density, bits or rank; None: never; the top of the range: always)."""

    nodes: int
    ranks: int
    bytes: int
    dense_us: float
    dense_algorithm: str
    limits: dict[str, float | None]
    at_default_us: dict[str, float]


def _largest(fits, lo: float, hi: float, integer: bool = False, log: bool = False) -> float | None:
    """The largest x in [lo, hi] with fits(x) (fits is monotone: true then false), or None."""
    if not fits(lo):
        return None
    if fits(hi):
        return hi
    a, b = lo, hi
    for _ in range(40):
        mid = math.sqrt(a * b) if log else (a + b) / 2
        if integer:
            mid = math.floor(mid)
            if mid <= a:
                break
        a, b = (mid, b) if fits(mid) else (a, mid)
    return a


# what each algorithm's crossover is searched over: (setting field, low, high, log scale, integer)
_SEARCH = {"topk_allgather": ("density", 1e-6, 1.0, True, False),
           "topk_rd": ("density", 1e-6, 1.0, True, False),
           "gtopk": ("density", 1e-6, 1.0, True, False),
           "quant_ring": ("bits", 1.0, None, False, False),
           "quant_oneshot": ("bits", 1.0, None, False, False),
           "powersgd": ("rank", 1, None, False, True)}


def _limits(model: CompressedModel, p: int, n: int, itemsize: int, setting: Setting,
            dense: float) -> dict[str, float | None]:
    """Per algorithm, the largest density / bits / rank with a time below ``dense``."""
    out: dict[str, float | None] = {}
    for name, (field, lo, hi, log, integer) in _SEARCH.items():
        if hi is None:   # bits up to the dtype's own, ranks up to the matrix's smaller side
            hi = 8.0 * itemsize if field == "bits" else min(matrix_shape(n))

        def faster(x: float, name: str = name, field: str = field) -> bool:
            value = int(x) if field == "rank" else x
            return model.cost(name, p, n, itemsize, replace(setting, **{field: value})).total < dense

        out[name] = _largest(faster, lo, hi, integer=integer, log=log)
    return out


def crossovers(profile: Profile, node_counts: Sequence[int], ranks_per_node: int,
               sizes: Sequence[int], itemsize: int = 4, dtype: str = "float32",
               setting: Setting = Setting()) -> list[Crossover]:
    """Where each compressed algorithm stops beating the fastest dense allreduce."""
    model = CompressedModel(profile, ranks_per_node)
    out = []
    for nodes in node_counts:
        p = nodes * ranks_per_node
        for size in sizes:
            n = max(1, size // itemsize)
            dense_cost, dense_name = model.dense(p, n, itemsize, dtype)
            dense = dense_cost.total
            limits = _limits(model, p, n, itemsize, setting, dense)
            at_default = {name: model.cost(name, p, n, itemsize, setting).total * 1e6 for name in NAMES}
            out.append(Crossover(nodes, p, size, dense * 1e6, dense_name, limits, at_default))
    return out


def _time(us: float) -> str:
    return f"{us / 1e3:.3g} ms" if us >= 1e3 else f"{us:.3g} us"


def _limit(name: str, value: float | None, itemsize: int) -> str:
    if value is None:
        return "never"
    if name.startswith("quant"):
        return "any (<= 32)" if value >= 8 * itemsize else f"{value:.1f} bits"
    if name == "powersgd":
        return f"r <= {int(value)}"
    return "any" if value >= 1.0 else f"d <= {value:.2g}"


def format_crossovers(rows: list[Crossover], profile: Profile, ranks_per_node: int,
                      itemsize: int = 4, dtype: str = "float32", fmt: str = "text",
                      setting: Setting = Setting()) -> str:
    """The crossover table: per node count and size, the best dense time and how far each
    compressed algorithm may go (largest density / bit width / rank) and still be faster."""
    if fmt == "json":
        import json

        return json.dumps([{"profile": profile.name, "nodes": r.nodes, "ranks": r.ranks,
                            "bytes": r.bytes, "dtype": dtype, "dense_us": r.dense_us,
                            "dense_algorithm": r.dense_algorithm,
                            "limits": r.limits, "time_us_at_setting": r.at_default_us,
                            "setting": setting.__dict__} for r in rows], indent=1)
    tablefmt = "github" if fmt == "markdown" else "simple"
    headers = ["nodes", "ranks", "size", "best dense", *NAMES]
    body = [[r.nodes, r.ranks, format_bytes(r.bytes), f"{_time(r.dense_us)} {r.dense_algorithm}",
             *(_limit(name, r.limits[name], itemsize) for name in NAMES)] for r in rows]
    at = [[r.nodes, r.ranks, format_bytes(r.bytes), f"{_time(r.dense_us)} {r.dense_algorithm}",
           *(_time(r.at_default_us[name]) for name in NAMES)] for r in rows]
    lines = [(f"# compressed allreduce vs the fastest exact one, profile {profile.label}, "
              f"{ranks_per_node} rank(s) per node, {dtype}"),
             ("# largest density d (top-k), bits per element (quantized; int8/fp8 are 8) or rank r "
              "(powersgd) that still beats the best dense allreduce; never: the fixed costs (α, "
              "selection, quantization) alone lose"),
             tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True),
             "",
             (f"# predicted time at density {setting.density:g}, {setting.bits:g} bits "
              f"(block {setting.block}), rank {setting.rank}"),
             tabulate(at, headers=headers, tablefmt=tablefmt, disable_numparse=True)]
    return "\n".join(lines)
