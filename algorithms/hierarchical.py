"""Two-level algorithms over the node layout of :attr:`Problem.layout`.

Node ``k`` holds ranks ``nodes[k][0..g-1]``; the rank at position ``j`` of its node has *local
index* ``j``. The ranks with the same local index on every node form an *outer group*; each node
is an *inner group*. The layout must be uniform (every node holds ``g`` ranks).

* allreduce: the vector is cut into ``g`` shards. Inner reduce-scatter (local index ``j`` ends
  with shard ``j`` summed over its node) -> outer allreduce of shard ``j`` over the ``P`` nodes
  (in place in the output) -> inner allgather of the shards. Every rank sends ``1/g`` of the
  vector across the network, and the inter-node phase can use a latency-optimal algorithm.
* allgather: outer allgather first (local index ``j`` collects the blocks of the ranks with
  local index ``j`` everywhere), then inner allgather of those sets of blocks. Both work on a
  *packed* vector in local-index-major order (position ``j*P + k`` holds the block of rank
  ``nodes[k][j]``), where what an outer group gathers and what a member of a node holds are
  each one contiguous range: every step is one message per peer. A final local copy unpacks it
  into rank order. Only a "round robin" layout (node ``k`` holds ranks ``j*P + k``) is packed
  already and skips the scratch and the copy; a blocked layout (what Slurm gives) needs them.
* reduce_scatter: inner reduce-scatter first (local index ``j`` gets the blocks destined to its
  outer group, summed over the node), then outer reduce-scatter. The input is first packed in
  the same order into scratch (one local copy of the input) unless the layout is round robin.

Options: ``inner`` and ``outer`` name the algorithms of each level. ``inner`` picks the
intra-node reduce-scatter / allgather pair: ``ring``, ``direct`` or ``halving_doubling``
(recursive halving + recursive doubling; ``rabenseifner``, ``recursive_halving`` and
``recursive_doubling`` mean the same); ``inner_allgather`` overrides the inner allgather with any
allgather algorithm (``ring``, ``recursive_doubling``, ``bruck``, ``direct``). ``outer`` is an
algorithm of the same collective (allreduce: ``ring``, ``recursive_doubling``, ``rabenseifner``,
``tree``, ``double_binary_tree``, ``direct``); ``outer_options`` are passed to it (e.g.
``{"chunks": 4}`` for the double binary tree, ``{"channels": 2}`` for several rings).

NIC rails: the inter-node phase is one channel per GPU rail by construction -- the outer group
of local index ``j`` is rank ``j`` of every node, so on a node with one NIC per GPU
(Perlmutter, DGX A100) the ``g`` outer groups use the ``g`` NICs at once, and where fewer NICs
serve the node (Delta) the model charges them as shared. ``outer_options={"channels": K}``
with ``outer="ring"`` (allreduce) runs ``K`` rings over the nodes on every rail, in different
node orders (:func:`~.ring.ring_orders`), each with ``1/K`` of the shard: more messages in
flight per NIC and, on nodes whose GPUs drive several NICs, more NICs per GPU.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Mapping

from . import bruck, direct, double_binary_tree, halving_doubling, recursive_doubling, ring, tree
from ._build import (
    INPUT,
    OUTPUT,
    Builder,
    Group,
    Partition,
    Region,
    SharedLocal,
    chunks_problem,
    shared_copies,
)
from ._flat import flat_units
from .schedule import Buf, Collective, Layout, Problem, Program

AllreduceCore = tuple[Callable[..., None], Callable[[int, int, Mapping[str, Any]], int]]

ALLREDUCE_CORES: dict[str, AllreduceCore] = {
    "ring": (ring.allreduce_core, ring.allreduce_span),
    "recursive_doubling": (recursive_doubling.allreduce_core, recursive_doubling.allreduce_span),
    "rabenseifner": (halving_doubling.allreduce_core, halving_doubling.allreduce_span),
    "tree": (tree.allreduce_core, tree.allreduce_span),
    "double_binary_tree": (double_binary_tree.allreduce_core, double_binary_tree.allreduce_span),
    "direct": (direct.allreduce_core, direct.allreduce_span),
}
ALLGATHER_CORES = {
    "ring": (ring.allgather_core, ring.allgather_span),
    "recursive_doubling": (recursive_doubling.allgather_core, recursive_doubling.allgather_span),
    "bruck": (bruck.allgather_core, bruck.allgather_span),
    "direct": (direct.allgather_core, direct.allgather_span),
}
REDUCE_SCATTER_CORES = {
    "ring": (ring.reduce_scatter_core, ring.reduce_scatter_span),
    "recursive_halving": (halving_doubling.reduce_scatter_core,
                          halving_doubling.reduce_scatter_span),
    "direct": (direct.reduce_scatter_core, direct.reduce_scatter_span),
}
# inner level: one name picks a reduce-scatter and an allgather
INNER = {"ring": ("ring", "ring"), "direct": ("direct", "direct"),
         "halving_doubling": ("recursive_halving", "recursive_doubling")}
_SYNONYMS = {"rabenseifner": "halving_doubling", "recursive_halving": "halving_doubling",
             "recursive_doubling": "halving_doubling"}
_OUTER_SYNONYMS = {"halving_doubling": "rabenseifner"}

DEFAULTS: dict[Collective, dict[str, Any]] = {
    Collective.ALLREDUCE: {"inner": "ring", "outer": "recursive_doubling",
                           "inner_allgather": None, "outer_options": None},
    Collective.ALLGATHER: {"inner": "ring", "outer": "recursive_doubling",
                           "inner_allgather": None, "outer_options": None},
    Collective.REDUCE_SCATTER: {"inner": "ring", "outer": "recursive_halving",
                                "inner_allgather": None, "outer_options": None},
}


def resolve_levels(problem: Problem, options: Mapping[str, Any]) -> tuple[str, str, str]:
    """(inner reduce-scatter, inner allgather, outer) names, or ValueError with the reason."""
    inner = str(options.get("inner") or "ring")
    inner = _SYNONYMS.get(inner, inner)
    if inner not in INNER:
        raise ValueError(f"hierarchical: unknown inner algorithm {options.get('inner')!r} "
                         f"(known: {', '.join(INNER)}, rabenseifner, recursive_halving, "
                         f"recursive_doubling)")
    inner_rs, inner_ag = INNER[inner]
    if options.get("inner_allgather"):
        inner_ag = str(options["inner_allgather"])
        if inner_ag not in ALLGATHER_CORES:
            raise ValueError(f"hierarchical: unknown inner_allgather {inner_ag!r} "
                             f"(known: {', '.join(ALLGATHER_CORES)})")
    outer = str(options.get("outer") or DEFAULTS[problem.collective]["outer"])
    outer = _OUTER_SYNONYMS.get(outer, outer)
    table = {Collective.ALLREDUCE: ALLREDUCE_CORES, Collective.ALLGATHER: ALLGATHER_CORES,
             Collective.REDUCE_SCATTER: REDUCE_SCATTER_CORES}[problem.collective]
    if outer not in table:
        raise ValueError(f"hierarchical {problem.collective.value}: unknown outer algorithm "
                         f"{options.get('outer')!r} (known: {', '.join(table)})")
    return inner_rs, inner_ag, outer


def precondition(problem: Problem, options: Mapping[str, Any]) -> str | None:
    """Why the hierarchical algorithm cannot run this problem, or None."""
    layout = problem.nodes
    if not layout.uniform:
        sizes = ", ".join(str(len(node)) for node in layout.nodes)
        return (f"hierarchical needs the same number of ranks on every node; the layout has "
                f"{len(layout.nodes)} nodes holding {sizes} ranks")
    try:
        resolve_levels(problem, options)
    except ValueError as exc:
        return str(exc)
    outer_options = options.get("outer_options")
    if outer_options is not None:
        if not isinstance(outer_options, Mapping):
            return "hierarchical: outer_options must be a mapping of option names to values"
        _, _, outer = resolve_levels(problem, options)
        accepted: tuple[str, ...] = ()
        if outer == "double_binary_tree":
            accepted = ("chunks",)
        elif outer == "ring" and problem.collective is Collective.ALLREDUCE:
            accepted = ("channels",)       # several rings over the nodes on every rail
        for key, value in outer_options.items():
            if key not in accepted:
                return (f"hierarchical: outer algorithm {outer} does not take option {key!r} "
                        f"(accepted: {', '.join(accepted) or 'none'})")
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < 1):
                return f"hierarchical: outer {key} must be a positive integer (got {value!r})"
            why = (ring.check_channels(problem, {key: value}) if key == "channels"
                   else chunks_problem({key: value}))
            if why:
                return f"hierarchical: outer {why}"
    return None


def _groups(layout: Layout, rank: int) -> tuple[Group, Group, int, int]:
    """(inner group, outer group, node index k, local index j) of ``rank``."""
    found = _group_table(layout).get(rank)
    if found is None:
        raise ValueError(f"rank {rank} is on no node of the layout")
    return found


@lru_cache(maxsize=64)
def _group_table(layout: Layout) -> dict[int, tuple[Group, Group, int, int]]:
    """:func:`_groups` of every rank of ``layout``, found once per layout (each rank's search
    through the nodes made a schedule's generation quadratic in the rank count)."""
    table: dict[int, tuple[Group, Group, int, int]] = {}
    for k, node in enumerate(layout.nodes):
        for j, rank in enumerate(node):
            outer = tuple(n[j] for n in layout.nodes)
            table.setdefault(rank, (Group(node, j), Group(outer, k), k, j))
    return table


def allreduce(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    inner_rs, inner_ag, outer = resolve_levels(problem, options)
    outer_opts = options.get("outer_options") or {}
    inner, outer_grp, _, j = _groups(problem.nodes, rank)
    g, nodes = inner.size, outer_grp.size
    n = problem.count
    shards = Partition(n, g)
    b = Builder(rank)
    t = 0
    if g > 1:
        core, span = REDUCE_SCATTER_CORES[inner_rs]
        core(b, inner, shards, INPUT, OUTPUT, True, t, 0)
        t += span(g)
        src = Region(Buf.OUTPUT, shards.off(j))
    else:
        src = INPUT
    core, span = ALLREDUCE_CORES[outer]
    core(b, outer_grp, src, Region(Buf.OUTPUT, shards.off(j)), shards.len(j), t, 0, outer_opts)
    # every outer group must finish before the allgather: take the longest shard's span
    t += max(span(nodes, shards.len(s), outer_opts) for s in {0, g - 1})
    if g > 1:
        core, _ = ALLGATHER_CORES[inner_ag]
        core(b, inner, shards, OUTPUT, flat_units, None, t)
    return b.build()


@lru_cache(maxsize=64)
def packed_order(layout: Layout) -> tuple[int, ...]:
    """Rank whose block sits at each position of the local-index-major packed vector:
    position ``j * P + k`` holds rank ``nodes[k][j]`` (identity for a round-robin layout)."""
    g, nodes = len(layout.nodes[0]), len(layout.nodes)
    return tuple(layout.nodes[k][j] for j in range(g) for k in range(nodes))


@lru_cache(maxsize=64)
def _is_identity(order: tuple[int, ...]) -> bool:
    return all(r == pos for pos, r in enumerate(order))


@lru_cache(maxsize=256)
def _unpack(order: tuple[int, ...], count: int) -> SharedLocal:
    """The copies from packed position ``pos`` (scratch) to block ``order[pos]`` of the
    output, one per run of positions whose ranks are consecutive too (alike on every rank)."""
    vec = Region(Buf.SCRATCH, 0)
    pairs = []
    start = 0
    for pos in range(1, len(order) + 1):
        if pos == len(order) or order[pos] != order[pos - 1] + 1:
            length = (pos - start) * count
            pairs.append((vec.at(start * count, length), OUTPUT.at(order[start] * count, length)))
            start = pos
    return shared_copies(pairs)


@lru_cache(maxsize=256)
def _pack(order: tuple[int, ...], count: int) -> SharedLocal:
    """The copies of every rank's input block into packed order in scratch (alike on every
    rank)."""
    vec = Region(Buf.SCRATCH, 0)
    return shared_copies([(INPUT.at(r * count, count), vec.at(pos * count, count))
                          for pos, r in enumerate(order)])


def allgather(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    _, inner_ag, outer = resolve_levels(problem, options)
    layout = problem.nodes
    inner, outer_grp, _, j = _groups(layout, rank)
    g, nodes = inner.size, outer_grp.size
    p, count = problem.nranks, problem.count
    order = packed_order(layout)
    packed = not _is_identity(order)
    # the packed vector: the output itself when it is already in packed order, else scratch
    # (then the cores' own scratch, e.g. Bruck's rotated buffer, goes after it)
    vec = Region(Buf.SCRATCH, 0) if packed else OUTPUT
    free = count * p if packed else 0
    b = Builder(rank)
    group_len = nodes * count  # outer group j gathers positions j*P .. j*P + P-1
    core, span = ALLGATHER_CORES[outer]
    core(b, outer_grp, Partition(group_len, nodes), Region(vec.buf, j * group_len), flat_units,
         INPUT.at(0, count), 0, scratch=free)
    t = span(nodes)
    if g > 1:  # member j of a node holds the range of outer group j: one block of g
        core, span = ALLGATHER_CORES[inner_ag]
        core(b, inner, Partition(count * p, g), vec, flat_units, None, t, scratch=free)
        t += span(g)
    if packed:
        b.shared_local(t, _unpack(order, count))
    return b.build()


def reduce_scatter(problem: Problem, rank: int, options: Mapping[str, Any]) -> Program:
    inner_rs, _, outer = resolve_levels(problem, options)
    layout = problem.nodes
    inner, outer_grp, k, j = _groups(layout, rank)
    g, nodes = inner.size, outer_grp.size
    p, count = problem.nranks, problem.count
    b = Builder(rank)
    t = 0
    order = packed_order(layout)
    if _is_identity(order):
        vec = INPUT
    else:
        vec = Region(Buf.SCRATCH, 0)
        b.shared_local(t, _pack(order, count))
        t += 1
    base = count * p if vec.buf is Buf.SCRATCH else 0
    if nodes == 1:  # one node: the inner reduce-scatter is the whole job
        core, _ = REDUCE_SCATTER_CORES[inner_rs]
        core(b, inner, Partition(count * p, g), vec, OUTPUT, False, t, base)
        return b.build()
    group_len = nodes * count  # what one outer group reduces: P blocks
    if g > 1:
        core, span = REDUCE_SCATTER_CORES[inner_rs]
        mid = Region(Buf.SCRATCH, base)
        core(b, inner, Partition(count * p, g), vec, mid, False, t, base + group_len)
        base += group_len
        t += span(g)
    else:
        mid = vec
    core, _ = REDUCE_SCATTER_CORES[outer]
    core(b, outer_grp, Partition(group_len, nodes), mid, OUTPUT, False, t, base)
    return b.build()
