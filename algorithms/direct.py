"""Direct (one-shot) algorithms: everyone talks to everyone.

* allreduce: every rank sends its whole input to every other rank in one step and reduces all
  ``p`` vectors locally (one step, ``(p-1) n`` bytes sent per rank, ``(p-1) n`` scratch). Each
  rank starts from its own input, so floating-point sums may differ between ranks in the last
  bits (every rank adds in its own order).
* allgather: every rank sends its block to every other rank in one step.
* reduce_scatter (pairwise exchange, MPICH's long-message algorithm): in step ``s`` rank ``i``
  sends block ``i+s`` of its input to rank ``i+s`` and adds the block it receives from ``i-s``:
  ``p-1`` steps, one message each way per step.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._build import Builder, Group, Partition, Region, make_slice, unit_runs
from ._flat import flat_allgather, flat_allreduce, flat_reduce_scatter
from .ring import UnitsOf, _place_own, flat_units
from .schedule import Buf, Slice


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    return 1


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """One-shot allreduce of ``n`` elements from ``src`` into ``dst``."""
    g, i = grp.size, grp.me
    mine, result = src.at(0, n), dst.at(0, n)
    if g == 1:
        b.copy(t0, mine, result)
        return
    current = mine
    for j in range(g):
        if j == i:
            continue
        slot = make_slice(Buf.SCRATCH, scratch + (j if j < i else j - 1) * n, n)
        b.send(t0, grp.peer(j), mine)
        b.recv(t0, grp.peer(j), slot)
        # own input first: in place it is read before the output is overwritten
        b.reduce(t0, result, current, slot)
        current = result


def allgather_span(g: int) -> int:
    return 1


def allgather_core(b: Builder, grp: Group, part: Partition, region: Region, units: UnitsOf,
                   own: Slice | None, t0: int, scratch: int = 0) -> None:
    """One-step allgather; arguments as in :func:`.ring.allgather_core` (no scratch used)."""
    g, i = grp.size, grp.me
    if units is flat_units:
        runs = [[slc] for slc in part.slices(region)]
    else:
        runs = [unit_runs(units(u, u + 1), part, region) for u in range(g)]
    if own is not None:
        _place_own(b, t0, own, runs[i])
    mine = [own] if own is not None else runs[i]
    for j in range(g):
        if j != i:
            peer = grp.peer(j)
            b.send_all(t0, peer, mine)
            b.recv_all(t0, peer, runs[j])


def reduce_scatter_span(g: int) -> int:
    return max(1, g - 1)


def reduce_scatter_core(b: Builder, grp: Group, part: Partition, src: Region, dst: Region,
                        mirror: bool, t0: int, scratch: int) -> None:
    """Pairwise-exchange reduce-scatter; arguments as in :func:`.ring.reduce_scatter_core`."""
    g, i = grp.size, grp.me
    blocks = part.slices(src)
    mine = blocks[i]
    length = mine.length
    result = dst.at(part.off(i), length) if mirror else dst.at(0, length)
    if g == 1:
        b.copy(t0, mine, result)
        return
    slot = make_slice(Buf.SCRATCH, scratch, length)
    for s in range(1, g):
        to, frm = (i + s) % g, (i - s) % g
        b.send(t0 + s - 1, grp.peer(to), blocks[to])
        b.recv(t0 + s - 1, grp.peer(frm), slot)
        b.reduce(t0 + s - 1, result, mine if s == 1 else result, slot)


# -- public generators -------------------------------------------------------------------------

allreduce = flat_allreduce(allreduce_core)


allgather = flat_allgather(allgather_core)


reduce_scatter = flat_reduce_scatter(reduce_scatter_core)
