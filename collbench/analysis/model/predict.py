"""Predictions: the time, bus bandwidth and dominant term of every algorithm, per size and node
count, and the fastest one (``collbench model predict``); also the costing entry point that
``model check`` and ``--algo auto`` use (:class:`Model`).

Speed: phases are built once per (collective, algorithm, ranks, layout, chunk count) at a
*reference* element count that splits evenly at every level (:func:`.forms.regular_count`)
and scaled to each size -- exact for sizes that split evenly, within one element per message
otherwise -- so a whole size sweep costs one closed-form evaluation. Up to
:data:`EXACT_RANKS` ranks each size is costed exactly instead (used by ``model check``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tabulate import tabulate

from ...algorithms import Collective, Layout, Problem
from ...algorithms._build import default_chunks
from ...algorithms.registry import algorithms_for, get_algorithm
from ...algorithms.vcounts import DEFAULT as DEFAULT_SKEW
from ...algorithms.vcounts import Skew
from ...dtypes import DTYPES
from ...errors import UsageError
from ...metrics import bus_factor, bytes_for_count, count_for_size
from ...sizes import format_bytes
from . import nccl as nccl_model
from .cost import Compiled, Cost, Phase, compile_phases, total
from .forms import phases as closed_phases
from .forms import regular_count
from .profile import Profile
from .topo import Topo, topo_of
from .walk import step_signatures

EXACT_RANKS = 256      # cost every size exactly up to this many ranks
WALK_RANKS = 1024      # walk schedules without a closed form up to this many ranks


@dataclass(frozen=True)
class Prediction:
    collective: str
    algorithm: str
    nranks: int
    nnodes: int
    bytes: int
    cost: Cost
    method: str           # closed | walk | nccl <algorithm>/<protocol>
    options: Mapping[str, Any] | None = None   # the variant's options (None: the defaults)

    @property
    def label(self) -> str:
        """``hierarchical (outer=rabenseifner)``: the algorithm and its non-default options."""
        return self.algorithm + (f" ({option_text(self.options)})" if self.options else "")

    @property
    def time_us(self) -> float:
        return self.cost.total * 1e6

    @property
    def busbw_gbps(self) -> float:
        t = self.cost.total
        if t <= 0:
            return 0.0
        return self.bytes / t / 1e9 * bus_factor(Collective.parse(self.collective), self.nranks)


def _layout_key(layout: Layout | None) -> Any:
    return None if layout is None else layout.nodes


class Model:
    """Costs of schedules on one machine profile, with the structure cached across sizes."""

    def __init__(self, profile: Profile, skew: Skew | None = None,
                 nccl_env: Mapping[str, str] | None = None) -> None:
        self.profile = profile
        self.skew = skew  # alltoallv's count matrix (None: the default Zipf); one per model
        # the run's NCCL_ALGO / NCCL_PROTO: which pairs NCCL may choose for its own collective
        self.nccl_env = {k: v for k, v in (nccl_env or {}).items() if k in nccl_model.ENV_VARIABLES}
        self._nccl = (nccl_model.with_env(profile.nccl, self.nccl_env)
                      if profile.nccl is not None and self.nccl_env else profile.nccl)
        self._cache: dict[tuple, tuple[int, list[Phase] | None, str]] = {}
        self._topos: dict[tuple, Topo] = {}
        self._preconditions: dict[tuple, bool] = {}
        self._compiled: dict[tuple, Compiled] = {}

    def _topo(self, layout: Layout | None, nranks: int) -> Topo:
        key = (nranks, _layout_key(layout))
        topo = self._topos.get(key)
        if topo is None:
            topo = self._topos[key] = topo_of(layout, nranks)
        return topo

    def cost(self, collective: Collective, algorithm: str, nranks: int, count: int, itemsize: int,
             dtype: str | None = "float32", layout: Layout | None = None, in_place: bool = False,
             options: Mapping[str, Any] | None = None, root: int = 0,
             exact: bool | None = None, backend: str | None = None,
             gpus_per_process: int = 1) -> tuple[Cost, str] | None:
        """(cost, method) of one algorithm for ``count`` elements, or None when the model has
        nothing to say (a library's ``native`` collective other than NCCL's, a precondition
        fails, too many ranks to walk). ``native`` on the ``nccl`` backend is NCCL's own
        collective (:mod:`.nccl`): method ``nccl <algorithm>/<protocol>``, NCCL's choice."""
        try:
            algo = get_algorithm(algorithm)
        except ValueError:
            return None
        if algo.native:
            return self.native_cost(collective, nranks, count, itemsize, layout, backend,
                                    gpus_per_process)
        if layout is not None and len(layout.nodes) == 1:
            layout = None
        skew = self.skew if collective is Collective.ALLTOALLV else None
        opts = dict(options or {})
        # preconditions do not depend on the count here (every algorithm takes any count):
        # check once per shape (building a Problem validates the whole layout: O(ranks))
        pre_key = (collective, algo.name, nranks, _layout_key(layout),
                   json.dumps(opts, sort_keys=True, default=str), root % nranks)
        ok = self._preconditions.get(pre_key)
        if ok is None:
            problem = Problem(collective, nranks, 1, root % nranks, layout, skew)
            ok = self._preconditions[pre_key] = algo.precondition(problem, op=None,
                                                                  options=opts) is None
        if not ok:
            return None
        if count == 0:
            return Cost(0.0, 0.0, 0.0), "closed"
        machine = self.profile.machine(dtype)
        exact = nranks <= EXACT_RANKS if exact is None else exact
        opts = self._fix_chunks(algo.name, collective, count, nranks, layout, opts)
        if exact:
            problem = Problem(collective, nranks, count, root % nranks, layout, skew)
            ph = closed_phases(algo.name, problem, itemsize, in_place, opts,
                               self._topo(layout, nranks))
            if ph is not None:
                return total(ph, machine), "closed"
            if nranks > WALK_RANKS:
                return None
            ph = [Phase(1, s) for _, s in step_signatures(algo.name, problem, itemsize, in_place, opts)]
            return total(ph, machine), "walk"
        key = (collective, algo.name, nranks, _layout_key(layout), itemsize, in_place,
               json.dumps(opts, sort_keys=True, default=str), root % nranks)
        entry = self._cache.get(key)
        if entry is None:
            # channels cut the vector like chunks do: the reference count splits evenly by both
            chunks = int(opts.get("chunks") or 1) * int(opts.get("channels") or 1)
            ref = regular_count(nranks, layout, chunks) * 64
            problem = Problem(collective, nranks, ref, root % nranks, layout, skew)
            ph = closed_phases(algo.name, problem, itemsize, in_place, opts,
                               self._topo(layout, nranks))
            method = "closed"
            if ph is None and nranks <= WALK_RANKS:
                ph = [Phase(1, s) for _, s in step_signatures(algo.name, problem, itemsize,
                                                                in_place, opts)]
                method = "walk"
            entry = self._cache[key] = (ref, ph, method)
        ref, ph, method = entry
        if ph is None:
            return None
        ckey = (key, dtype)
        compiled = self._compiled.get(ckey)
        if compiled is None:
            compiled = self._compiled[ckey] = compile_phases(ph, machine)
        return compiled.cost(count / ref), method

    def native_cost(self, collective: Collective, nranks: int, count: int, itemsize: int,
                    layout: Layout | None, backend: str | None,
                    gpus_per_process: int = 1) -> tuple[Cost, str] | None:
        """NCCL's own collective, when the backend is NCCL and the profile has an ``nccl``
        section; None otherwise (MPI libraries' collectives are not modelled)."""
        system = self._nccl
        if backend != "nccl" or system is None:
            return None
        if collective in (Collective.ALLTOALL, Collective.ALLTOALLV):
            # NCCL's ring/tree x LL/LL128/Simple tuning covers the reductions and gathers only;
            # collbench's nccl backend runs alltoall(v) as one group of ncclSend/ncclRecv to every
            # peer (backends/nccl.py; nccl-tests' src/alltoall.cu did the same before NCCL 2.28
            # added ncclAlltoAll -- its 2.28.3 release notes, as cited in openucx/ucc PR #1244),
            # which is the direct schedule on NCCL p2p
            out = self.cost(collective, "direct", nranks, count, itemsize, layout=layout,
                            backend="nccl", gpus_per_process=gpus_per_process)
            return None if out is None else (out[0], "nccl p2p (direct)")
        nnodes = len(layout.nodes) if layout is not None else 1
        if layout is not None and len({len(m) for m in layout.nodes}) != 1:
            return None          # NCCL's model assumes the same rank count on every node
        nbytes = bytes_for_count(collective, count, itemsize, nranks)
        out = nccl_model.predict(system, collective, nranks, nnodes, nbytes, gpus_per_process)
        if out is None:
            return None
        cost, choice = out
        return cost, f"nccl {choice.label}"

    @staticmethod
    def _fix_chunks(name: str, collective: Collective, count: int, nranks: int,
                    layout: Layout | None, opts: dict[str, Any]) -> dict[str, Any]:
        """Make the pipeline chunk count explicit (the default depends on the count, and the
        cached structure on the chunk count)."""
        if name == "double_binary_tree" or (name == "ring" and collective.rooted):
            if opts.get("chunks") is None:
                opts = {**opts, "chunks": default_chunks(count)}
        if name == "hierarchical" and str(opts.get("outer") or "") == "double_binary_tree":
            outer = dict(opts.get("outer_options") or {})
            if outer.get("chunks") is None:
                g = len(layout.nodes[0]) if layout is not None else nranks
                outer["chunks"] = default_chunks(-(-count // g))
                opts = {**opts, "outer_options": outer}
        return opts

    def predict(self, collective: Collective, algorithm: str, nranks: int, nbytes: int,
                dtype: str = "float32", layout: Layout | None = None, in_place: bool = False,
                options: Mapping[str, Any] | None = None, root: int = 0,
                exact: bool | None = None, backend: str | None = None) -> Prediction | None:
        """The prediction for one algorithm at a size in bytes (nccl-tests conventions)."""
        item = DTYPES[dtype].itemsize
        count = count_for_size(collective, nbytes, item, nranks)
        result = self.cost(collective, algorithm, nranks, count, item, dtype, layout, in_place,
                           options, root, exact, backend)
        if result is None:
            return None
        nnodes = len(layout.nodes) if layout is not None else 1
        return Prediction(collective.value, get_algorithm(algorithm).name, nranks, nnodes,
                          bytes_for_count(collective, count, item, nranks), result[0], result[1],
                          dict(options) if options else None)

    def best_variant(self, collective: Collective, algorithm: str, nranks: int, nbytes: int,
                     dtype: str = "float32", layout: Layout | None = None, in_place: bool = False,
                     root: int = 0) -> Prediction | None:
        """The fastest of ``algorithm``'s variants (:func:`variants`) at this size."""
        best = None
        for opts in variants(collective, algorithm, nranks, layout):
            pred = self.predict(collective, algorithm, nranks, nbytes, dtype, layout, in_place,
                                opts or None, root)
            if pred is not None and (best is None or pred.cost.total < best.cost.total):
                best = pred
        return best


# -- variants: the options worth searching -----------------------------------------------------------

CHANNELS = (1, 2, 4, 8)
CHUNKS = (None, 1, 4, 16, 64)
HIER_INNER = ("ring", "direct", "halving_doubling")
HIER_OUTER = {
    Collective.ALLREDUCE: ("recursive_doubling", "rabenseifner", "ring", "tree",
                           "double_binary_tree", "direct"),
    Collective.ALLGATHER: ("recursive_doubling", "ring", "bruck", "direct"),
    Collective.REDUCE_SCATTER: ("recursive_halving", "ring", "direct"),
}


def variants(collective: Collective, algorithm: str, nranks: int,
             layout: Layout | None = None) -> list[dict[str, Any]]:
    """Option sets of ``algorithm`` worth costing for ``collective`` (the defaults first):
    ring channels, tree and double-binary-tree allreduce channels (2 and 4), pipeline chunks of
    the double binary tree and the rooted chains, and the hierarchical algorithms' inner x outer
    levels (with outer ring channels)."""
    name = get_algorithm(algorithm).name
    A, G, RS = Collective.ALLREDUCE, Collective.ALLGATHER, Collective.REDUCE_SCATTER
    if name == "ring" and collective in (A, G, RS):
        return [{}] + [{"channels": k} for k in CHANNELS[1:] if k <= max(2, nranks)]
    # tree channels: K trees on distinct roots (algorithms/tree.py channel_orders)
    tree_channels = [{"channels": k} for k in CHANNELS[1:3] if k <= max(2, nranks)]
    if name == "tree" and collective is A:
        return [{}] + tree_channels
    if name == "double_binary_tree" and collective is A:
        return [{}] + [{"chunks": k} for k in CHUNKS[1:]] + tree_channels
    if name == "ring" and collective.rooted:
        return [{}] + [{"chunks": k} for k in CHUNKS[1:]]
    if name == "hierarchical" and collective in HIER_OUTER:
        out: list[dict[str, Any]] = [{}]
        for inner in HIER_INNER:
            for outer in HIER_OUTER[collective]:
                out.append({"inner": inner, "outer": outer})
                if outer == "ring" and collective is A:
                    out += [{"inner": inner, "outer": outer, "outer_options": {"channels": k}}
                            for k in CHANNELS[1:3]]
        return out
    return [{}]


def option_text(options: Mapping[str, Any] | None) -> str:
    """``outer=rabenseifner, channels=4``: options as the CLI's -O would spell them."""
    parts = []
    for key, value in (options or {}).items():
        if isinstance(value, Mapping):
            parts += [f"{key}.{k}={v}" for k, v in value.items()]
        elif value is not None:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


# -- model predict ------------------------------------------------------------------------------------


def parse_counts(text: str, what: str) -> list[int]:
    """``1..1024`` (powers of two from 1 to 1024, 1024 included), ``1,2,3`` or ``16``."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            if ".." in part:
                lo, hi = (int(x) for x in part.split("..", 1))
                if lo < 1 or hi < lo:
                    raise ValueError
                v = lo
                while v <= hi:
                    out.append(v)
                    v *= 2
                if out[-1] != hi:
                    out.append(hi)
            else:
                v = int(part)
                if v < 1:
                    raise ValueError
                out.append(v)
        except ValueError:
            raise UsageError(f"{what}: expected positive whole numbers, a comma list or A..B "
                             f"(powers of two from A to B), got {part!r}") from None
    if not out:
        raise UsageError(f"{what}: nothing given")
    return sorted(set(out))


@dataclass(frozen=True)
class PredictTable:
    """Predictions for one node count: ``cells[size][algorithm]``."""

    nnodes: int
    ranks_per_node: int
    sizes: list[int]
    algorithms: list[str]
    cells: dict[int, dict[str, Prediction]]

    def best(self, size: int) -> Prediction | None:
        row = self.cells.get(size, {})
        return min(row.values(), key=lambda p: p.cost.total, default=None)


def predict_tables(model: Model, collective: Collective, node_counts: Sequence[int],
                   ranks_per_node: int, sizes: Sequence[int], algorithms: Sequence[str] | None,
                   dtype: str = "float32", options: Mapping[str, Mapping[str, Any]] | None = None,
                   in_place: bool = False, search: bool = False) -> list[PredictTable]:
    """One table per node count: every algorithm (that applies) at every size; with
    ``search``, each algorithm's fastest variant (:func:`variants`) unless ``options`` fixes
    that algorithm's options."""
    names = list(algorithms) if algorithms else [a.name for a in algorithms_for(collective, False)]
    if model.profile.nccl is not None and (not algorithms or "native" in algorithms):
        names = [n for n in names if n != "native"] + ["native"]   # NCCL's own, as it chooses
    interp = interp_model(model)
    if interp is not None:
        names = names + [n + INTERP_SUFFIX for n in names if n != "native"]
    tables = []
    for nnodes in node_counts:
        p = nnodes * ranks_per_node
        layout = Layout.blocked(p, ranks_per_node) if nnodes > 1 else None
        cells: dict[int, dict[str, Prediction]] = {}
        for size in sizes:
            row = {}
            for name in names:
                if name.endswith(INTERP_SUFFIX):
                    continue
                fixed = (options or {}).get(name)
                if search and fixed is None and name != "native":
                    pred = model.best_variant(collective, name, p, size, dtype, layout, in_place)
                else:
                    pred = model.predict(collective, name, p, size, dtype, layout, in_place, fixed,
                                         backend="nccl" if name == "native" else None)
                if pred is not None:
                    row[name] = pred
            if interp is not None:  # the same schedules on the interpreter (profile's interp.step_us)
                row.update(_interp_cells(interp, collective, names, p, size, dtype, layout, in_place,
                                         options, search, ranks_per_node))
            cells[size] = row
        used = [n for n in names if any(n in cells[s] for s in sizes)]
        tables.append(PredictTable(nnodes, ranks_per_node, list(sizes), used, cells))
    return tables


def _time(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3g} s"
    if us >= 1e3:
        return f"{us / 1e3:.3g} ms"
    return f"{us:.3g} us"


def _term(cost: Cost) -> str:
    """Which term dominates, with its share: alpha 83%."""
    t = cost.total
    if t <= 0:
        return "-"
    name = {"alpha": "α", "beta": "β", "gamma": "γ"}[cost.dominant]
    share = max(cost.alpha, cost.beta, cost.local) / t
    return f"{name} {share:.0%}"


def crossovers(table: PredictTable) -> list[tuple[int, int, str]]:
    """(first size, last size, algorithm) runs of the fastest algorithm over the sizes."""
    runs: list[tuple[int, int, str]] = []
    for size in table.sizes:
        best = table.best(size)
        if best is None:
            continue
        if runs and runs[-1][2] == best.algorithm:
            runs[-1] = (runs[-1][0], size, best.algorithm)
        else:
            runs.append((size, size, best.algorithm))
    return runs


def format_predictions(tables: list[PredictTable], profile: Profile, collective: Collective,
                       dtype: str, fmt: str = "text", skew: Skew | None = None,
                       nccl_env: Mapping[str, str] | None = None) -> str:
    """Tables of predicted time per algorithm, the best algorithm and its dominant term
    (``skew``: alltoallv's count matrix the model priced, for the header and the records;
    ``nccl_env``: the NCCL_ALGO / NCCL_PROTO that restricted NCCL's choice)."""
    matrix = (skew or DEFAULT_SKEW).label if collective is Collective.ALLTOALLV else None
    env = dict(nccl_env or {})
    if fmt == "json":
        records = []
        for t in tables:
            for size in t.sizes:
                best = t.best(size)
                for name, pred in t.cells[size].items():
                    records.append({"collective": collective.value, "nodes": t.nnodes,
                                    "ranks_per_node": t.ranks_per_node, "nranks": pred.nranks,
                                    "bytes": pred.bytes, "algorithm": name,
                                    "time_us": pred.time_us, "busbw_gbps": pred.busbw_gbps,
                                    "alpha_us": pred.cost.alpha * 1e6, "beta_us": pred.cost.beta * 1e6,
                                    "gamma_us": pred.cost.local * 1e6, "steps": pred.cost.steps,
                                    "dominant": pred.cost.dominant, "method": pred.method,
                                    "best": best is not None and best.algorithm == name,
                                    "options": pred.options or {},
                                    "profile": profile.name, "dtype": dtype,
                                    **({"skew": matrix} if matrix else {}),
                                    **({"nccl_env": env} if env else {})})
        return json.dumps(records, indent=1)
    if fmt == "csv":
        import csv
        import io

        buffer = io.StringIO()
        fields = ["nodes", "nranks", "bytes", "algorithm", "time_us", "busbw_gbps", "alpha_us",
                  "beta_us", "gamma_us", "dominant", "best"]
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(json.loads(format_predictions(tables, profile, collective, dtype, "json")))
        return buffer.getvalue()
    tablefmt = "github" if fmt == "markdown" else "simple"
    out = [f"# model: {collective.value} {dtype}, profile {profile.label}: "
           f"intra α {profile.intra.alpha_us:g} us, {profile.intra.bandwidth_gbps:g} GB/s"
           f"{f' x{profile.intra.ports} ports' if profile.intra.ports > 1 else ''}; "
           f"inter α {profile.inter.alpha_us:g} us, {profile.inter.bandwidth_gbps:g} GB/s per NIC, "
           f"{profile.nics_per_node} NIC(s)/node",
           "# cells: predicted time (busbw GB/s); best: fastest algorithm and the term that "
           "dominates its time (α latency, β bandwidth, γ local reduction); native: NCCL's own "
           "collective with the algorithm/protocol NCCL's tuning model picks"
           + (" (alltoall: one group of sends and receives, priced as the direct schedule)"
              if collective in (Collective.ALLTOALL, Collective.ALLTOALLV) else "")]
    if matrix:
        out.append(f"# alltoallv count matrix {matrix} (size: the busiest rank's receive buffer)")
    if env:
        out.append("# native restricted as NCCL would be by "
                   + ", ".join(f"{k}={v}" for k, v in sorted(env.items())))
    if any(name.endswith(INTERP_SUFFIX) for t in tables for name in t.algorithms):
        out.append(f"# <algorithm>{INTERP_SUFFIX}: the same schedule on collbench's interpreter kernel (cuda "
                   f"backend): a step inside a node costs interp.step_us = {interp_step_us(profile):g} us "
                   "instead of the intra α; steps across nodes stay NCCL p2p (inter α)")
    for t in tables:
        p = t.nnodes * t.ranks_per_node
        out.append(f"\n## {t.nnodes} node{'s' if t.nnodes != 1 else ''} x {t.ranks_per_node} "
                   f"rank{'s' if t.ranks_per_node != 1 else ''} per node = {p} ranks")
        headers = ["size", *t.algorithms, "best", "bound by"]
        body = []
        for size in t.sizes:
            row = [format_bytes(size)]
            for name in t.algorithms:
                pred = t.cells[size].get(name)
                cell = "-" if pred is None else f"{_time(pred.time_us)} ({pred.busbw_gbps:.3g})"
                if pred is not None and pred.method.startswith("nccl "):
                    cell += f" {pred.method[5:]}"          # NCCL's algorithm/protocol
                elif pred is not None and pred.options:
                    cell += f" {option_text(pred.options)}"   # the winning variant
                row.append(cell)
            best = t.best(size)
            row += [best.label if best else "-", _term(best.cost) if best else "-"]
            body.append(row)
        out.append(tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True))
        runs = crossovers(t)
        if runs:
            out.append("crossovers: " + "; ".join(
                f"{format_bytes(a)}{'' if a == b else ' - ' + format_bytes(b)}: {name}"
                for a, b, name in runs))
    return "\n".join(out)


# -- the schedule interpreter (csrc/interp.cu) as a second execution choice ----------------------------

#: column suffix of the interpreter's predictions (``ring@interp``)
INTERP_SUFFIX = "@interp"


def interp_step_us(profile: Profile) -> float | None:
    """The profile's ``interp.step_us``: the interpreter kernel's cost per schedule step inside a
    node (a ready/done flag round trip between a pair of ranks, see collbench/gpu/interp.py).
    None when the profile has none: no shipped profile has it yet, because it has not been
    measured on a GPU (scripts/gpu_kernels_check.py's interpreter section measures it)."""
    section = profile.record.get("interp") if isinstance(profile.record, dict) else None
    value = section.get("step_us") if isinstance(section, dict) else None
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise UsageError(f"profile {profile.label}: interp.step_us must be a non-negative number of us")
    return float(value)


def interp_model(model: Model) -> Model | None:
    """A model of the same machine where a step inside a node costs ``interp.step_us`` instead of
    the intra level's α (the NCCL group launch, the reduce-kernel launch and the p2p latency of
    a schedule step on the nccl backend); bandwidths, reductions and the inter-node level (NCCL
    across nodes) unchanged. None when the profile has no ``interp.step_us``."""
    step = interp_step_us(model.profile)
    if step is None:
        return None
    import dataclasses

    intra = dataclasses.replace(model.profile.intra, alpha_us=step, large=None)
    return Model(dataclasses.replace(model.profile, intra=intra))


def _interp_cells(model: Model, collective: Collective, names: Sequence[str], p: int, size: int, dtype: str,
                  layout: Layout | None, in_place: bool, options: Mapping[str, Mapping[str, Any]] | None,
                  search: bool, ranks_per_node: int) -> dict[str, Prediction]:
    """``<algorithm>@interp`` predictions (the cuda backend runs at most 8 ranks per node on it)."""
    import dataclasses

    from ...backends.cuda import MAX_IPC_RANKS

    out: dict[str, Prediction] = {}
    if ranks_per_node > MAX_IPC_RANKS:
        return out
    for name in names:
        if name == "native" or name.endswith(INTERP_SUFFIX):
            continue
        fixed = (options or {}).get(name)
        if search and fixed is None:
            pred = model.best_variant(collective, name, p, size, dtype, layout, in_place)
        else:
            pred = model.predict(collective, name, p, size, dtype, layout, in_place, fixed)
        if pred is not None:
            column = name + INTERP_SUFFIX
            out[column] = dataclasses.replace(pred, algorithm=column, method=pred.method + " on cuda-interp")
    return out


def log_sizes(lo: int, hi: int, factor: int = 2) -> list[int]:
    out, v = [], max(1, lo)
    while v <= hi:
        out.append(v)
        v *= factor
    return out


__all__ = ["Model", "Prediction", "PredictTable", "predict_tables", "format_predictions",
           "parse_counts", "crossovers", "log_sizes", "math"]
