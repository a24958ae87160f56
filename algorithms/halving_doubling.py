"""Recursive halving reduce-scatter, and Rabenseifner's allreduce built on it.

Recursive halving: in step ``k`` (distance ``2**(L-1-k)``, halving every step) member ``i``
sends the half of its current range that its partner keeps and reduces the half it keeps, so
after ``L = lg p`` steps it holds its own block reduced over everyone: ``(p-1)/p n`` bytes per
rank in ``lg p`` steps. Rabenseifner's allreduce (MPICH's ``reduce_scatter_allgather``) is this
followed by a recursive-doubling allgather: ``2 lg p`` steps, ``2 (p-1)/p n`` bytes.

Non-powers of two use MPICH's fold (:class:`~._build.Fold`): an even member of the first ``2 rem``
hands its whole vector to its odd partner, which works for both and returns the partner's result
at the end. For the allreduce the vector is cut into ``2**L`` blocks, so any count works: when
``count < 2**L`` some blocks are empty and the steps that would move them carry nothing.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import recursive_doubling
from ._build import Builder, Fold, Group, Merged, Partition, Region, make_slice
from ._flat import flat_allreduce, flat_reduce_scatter
from .ring import flat_units
from .schedule import Buf, Slice


def reduce_scatter_span(g: int, fold_out: bool = True) -> int:
    f = Fold.of(g)
    extra = (1 + (1 if fold_out else 0)) if f.rem else 0
    return max(1, f.pof2.bit_length() - 1 + extra)


def reduce_scatter_core(b: Builder, grp: Group, part: Partition, src: Region, dst: Region,
                        mirror: bool, t0: int, scratch: int, fold_out: bool = True) -> None:
    """Recursive-halving reduce-scatter; arguments as in :func:`.ring.reduce_scatter_core`.

    With ``fold_out=False`` the results of the even fold members are not sent back (used when
    their blocks are empty).
    """
    g, i = grp.size, grp.me

    def final(block: int) -> Slice:
        length = part.len(block)
        return dst.at(part.off(block), length) if mirror else dst.at(0, length)

    if g == 1:
        b.copy(t0, src.at(part.off(0), part.len(0)), final(0))
        return
    f = Fold.of(g)
    levels = f.pof2.bit_length() - 1
    newpart = Merged(part, f.pof2, f.bound)
    nr = f.newrank(i)
    survivor_of_pair = i < 2 * f.rem and i % 2 == 1
    n = part.n

    # Where partial results live: in dst itself (mirror) or in a scratch accumulator that covers
    # the first range this member reduces; received data lands in a slot after it.
    if survivor_of_pair:
        acc_lo, acc_len = 0, n
    elif nr >= 0 and levels > 1:
        acc_lo, acc_len = newpart.span(*_keep(nr, f.pof2, levels, 0))
    else:  # never accumulates outside the result
        acc_lo, acc_len = 0, 0
    if mirror:
        def acc(off: int, length: int) -> Slice:
            return dst.at(off, length)
        slot_base = scratch
    else:
        def acc(off: int, length: int) -> Slice:
            return make_slice(Buf.SCRATCH, scratch + off - acc_lo, length)
        slot_base = scratch + acc_len

    def slot(length: int, at: int = 0) -> Slice:
        return make_slice(Buf.SCRATCH, slot_base + at, length)

    have = False  # whether my partial sums are in the accumulator yet
    t = t0
    if f.rem:
        if i < 2 * f.rem:
            if i % 2 == 0:
                b.send(t, grp.peer(i + 1), src.at(0, n))
            else:
                b.recv(t, grp.peer(i - 1), slot(n))
                b.reduce(t, acc(0, n), src.at(0, n), slot(n))
                have = True
        t += 1
    if nr >= 0:
        for k in range(levels):
            (klo, khi), (slo, shi) = _keep(nr, f.pof2, levels, k), _give(nr, f.pof2, levels, k)
            partner = grp.peer(f.member(nr ^ (1 << (levels - 1 - k))))
            s_off, s_len = newpart.span(slo, shi)
            k_off, k_len = newpart.span(klo, khi)
            current = acc if have else src.at
            b.send(t + k, partner, current(s_off, s_len))
            b.recv(t + k, partner, slot(k_len))
            if k < levels - 1:
                b.reduce(t + k, acc(k_off, k_len), current(k_off, k_len), slot(k_len))
                have = True
                continue
            # last level: the kept range is my block (and my fold partner's, if any)
            at = 0
            for blk in range(f.bound(nr), f.bound(nr + 1)):
                off, length = part.off(blk), part.len(blk)
                target = final(blk) if blk == i else acc(off, length)
                b.reduce(t + k, target, current(off, length), slot(length, at))
                at += length
    t += levels
    if f.rem and fold_out and i < 2 * f.rem:
        if i % 2:
            b.send(t, grp.peer(i - 1), acc(part.off(i - 1), part.len(i - 1)))
        else:
            b.recv(t, grp.peer(i + 1), final(i))


def _keep(nr: int, pof2: int, levels: int, k: int) -> tuple[int, int]:
    """New-block range new rank ``nr`` keeps after level ``k``."""
    size = pof2 >> (k + 1)
    lo = nr & ~(size - 1)
    return lo, lo + size


def _give(nr: int, pof2: int, levels: int, k: int) -> tuple[int, int]:
    """New-block range new rank ``nr`` hands to its partner at level ``k``."""
    size = pof2 >> (k + 1)
    lo = (nr ^ size) & ~(size - 1)
    return lo, lo + size


def allreduce_span(g: int, n: int, options: Mapping[str, Any]) -> int:
    if g == 1:
        return 1
    return reduce_scatter_span(g, fold_out=False) + recursive_doubling.allgather_span(
        g, fold_in=False)


def allreduce_core(b: Builder, grp: Group, src: Region, dst: Region, n: int, t0: int,
                   scratch: int, options: Mapping[str, Any]) -> None:
    """Rabenseifner's allreduce of ``n`` elements from ``src`` into ``dst``."""
    g = grp.size
    if g == 1:
        b.copy(t0, src.at(0, n), dst.at(0, n))
        return
    f = Fold.of(g)
    blocks = Partition(n, f.pof2)
    two_rem = 2 * f.rem
    # member i owns block newrank(i); the even fold members own an empty block
    part = Merged(blocks, g, lambda i: i // 2 if i <= two_rem else i - f.rem)
    reduce_scatter_core(b, grp, part, src, dst, True, t0, scratch, fold_out=False)
    recursive_doubling.allgather_core(b, grp, part, dst, flat_units, None,
                                      t0 + reduce_scatter_span(g, fold_out=False),
                                      fold_in=False)


# -- public generators -------------------------------------------------------------------------

allreduce = flat_allreduce(allreduce_core)


reduce_scatter = flat_reduce_scatter(reduce_scatter_core)
