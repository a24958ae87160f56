"""Recursive doubling: allreduce and allgather in ``log2 p`` exchange steps.

In step ``k`` member ``i`` exchanges with ``i xor 2**k``. Allreduce swaps the whole vector and
reduces (``lg p`` steps, ``n lg p`` bytes per rank: latency-optimal, bandwidth-poor); allgather
swaps everything gathered so far, doubling it each step (``(p-1)/p n`` bytes: optimal).

Any group size works through MPICH's fold (:class:`~._build.Fold`): with ``p = 2**L + rem`` the
first ``2 rem`` members pair up, the even one hands its data to its odd partner in one extra step
and gets the finished result back in another, so a non-power of two costs two more steps and
one more vector transfer.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._build import Builder, Fold, Group, Partition, Region, make_slice, unit_runs
from ._flat import flat_allgather, flat_allreduce
from .ring import UnitsOf, _place_own
from .schedule import Buf, Slice


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    f = Fold.of(g)
    return max(1, f.pof2.bit_length() - 1 + (2 if f.rem else 0))


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """Recursive-doubling allreduce of ``n`` elements from ``src`` into ``dst``."""
    g, i = grp.size, grp.me
    mine, result = src.at(0, n), dst.at(0, n)
    if g == 1:
        b.copy(t0, mine, result)
        return
    f = Fold.of(g)
    tmp = make_slice(Buf.SCRATCH, scratch, n)
    have = False  # whether my running result is in dst yet
    t = t0
    if f.rem:
        if i < 2 * f.rem:
            if i % 2 == 0:
                b.send(t, grp.peer(i + 1), mine)
            else:
                b.recv(t, grp.peer(i - 1), tmp)
                b.reduce(t, result, mine, tmp)
                have = True
        t += 1
    nr = f.newrank(i)
    levels = f.pof2.bit_length() - 1
    if nr >= 0:
        for k in range(levels):
            partner = grp.peer(f.member(nr ^ (1 << k)))
            current = result if have else mine
            b.send(t + k, partner, current)
            b.recv(t + k, partner, tmp)
            b.reduce(t + k, result, current, tmp)
            have = True
    t += levels
    if f.rem and i < 2 * f.rem:
        if i % 2:
            b.send(t, grp.peer(i - 1), result)
        else:
            b.recv(t, grp.peer(i + 1), result)


def allgather_span(g: int, fold_in: bool = True) -> int:
    f = Fold.of(g)
    extra = ((1 if fold_in else 0) + 1) if f.rem else 0  # hand-over step, result step
    return max(1, f.pof2.bit_length() - 1 + extra)


def allgather_core(b: Builder, grp: Group, part: Partition, region: Region, units: UnitsOf,
                   own: Slice | None, t0: int, fold_in: bool = True, scratch: int = 0) -> None:
    """Recursive-doubling allgather of the members' units into ``region``.

    Arguments as in :func:`.ring.allgather_core` (no scratch used). With ``fold_in=False`` the
    even members of the fold pairs are assumed to own nothing (their step of handing data over
    is left out), which is how Rabenseifner's allreduce uses it.
    """
    g, i = grp.size, grp.me

    def runs(lo: int, hi: int) -> list[Slice]:
        return unit_runs(units(lo, hi), part, region)

    if g == 1:
        if own is not None:
            _place_own(b, t0, own, runs(0, 1))
        return
    f = Fold.of(g)
    pending = own is not None  # my data is still only at `own`
    t = t0
    if f.rem and fold_in:
        if i < 2 * f.rem:
            if i % 2 == 0:
                # the fold-back returns everything, my own units included: no local copy needed
                b.send_all(t, grp.peer(i + 1), [own] if pending else runs(i, i + 1))
                pending = False
            else:
                b.recv_all(t, grp.peer(i - 1), runs(i - 1, i))
                if pending:
                    _place_own(b, t, own, runs(i, i + 1))
                    pending = False
        t += 1
    nr = f.newrank(i)
    levels = f.pof2.bit_length() - 1
    if nr >= 0:
        for k in range(levels):
            m = 1 << k
            mine_lo = nr & ~(m - 1)
            theirs_lo = mine_lo ^ m
            partner = grp.peer(f.member(nr ^ m))
            if pending:
                b.send(t + k, partner, own)
                _place_own(b, t + k, own, runs(i, i + 1))
                pending = False
            else:
                b.send_all(t + k, partner, runs(f.bound(mine_lo), f.bound(mine_lo + m)))
            b.recv_all(t + k, partner, runs(f.bound(theirs_lo), f.bound(theirs_lo + m)))
    t += levels
    if f.rem and i < 2 * f.rem:
        if i % 2:
            b.send_all(t, grp.peer(i - 1), runs(0, g))
        else:
            b.recv_all(t, grp.peer(i + 1), runs(0, g))


# -- public generators -------------------------------------------------------------------------

allreduce = flat_allreduce(allreduce_core)


allgather = flat_allgather(allgather_core)
