"""Symbolic execution of a schedule: what every element of every buffer holds, step by step.

An element holds "the reduction over the ranks in ``mask`` of source element ``idx``" (for
allgather and broadcast the mask has a single rank). A buffer is a list of segments; a segment is a
run of elements whose ``idx`` grows by one per element and whose ``mask`` is the same, so a whole
block costs one entry however long it is, and a reduction is a bitwise or of two Python ints.
``mask == 0`` means undefined (scratch, and output before anything is written there).

This module does the bookkeeping; :mod:`.verify` decides what is an error and what the collective
demands. It is written for speed (it runs millions of operations in a full sweep): plain lists,
local variables, fast paths for the common one-segment cases.

The same state vectorized (memory cut into atoms whose contributor bitsets live in numpy arrays,
a whole step applied at once) is :mod:`._proof`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from operator import eq, sub

# A piece of data in flight or read from a buffer: (length, idx of its first element, mask).
Piece = tuple[int, int, int]


class Memory:
    """The symbolic contents of one physical buffer.

    Segment ``i`` covers ``[starts[i], starts[i+1])`` (the last one up to ``size``); ``idxs[i]``
    is the source index of its first element and ``masks[i]`` its contributors.
    """

    __slots__ = ("size", "starts", "idxs", "masks")

    def __init__(self, size: int, idx0: int = 0, mask: int = 0) -> None:
        self.size = size
        self.starts = [0]
        self.idxs = [idx0]
        self.masks = [mask]

    def read(self, start: int, length: int) -> list[Piece]:
        """The pieces covering ``[start, start+length)`` (the caller has checked bounds)."""
        starts = self.starts
        if len(starts) == 1:
            return [(length, self.idxs[0] + start, self.masks[0])]
        i = bisect_right(starts, start) - 1
        end = start + length
        j = bisect_left(starts, end, i + 1)  # segments i .. j-1 overlap the range
        if j == i + 1:  # inside one segment
            return [(length, self.idxs[i] + start - starts[i], self.masks[i])]
        inner = starts[i + 1:j]
        out = [(inner[0] - start, self.idxs[i] + start - starts[i], self.masks[i])]
        inner.append(end)
        # whole segments (the last one cut at end), built column-wise at C speed
        out += zip(map(sub, inner[1:], inner), self.idxs[i + 1:j], self.masks[i + 1:j])
        return out

    def write(self, start: int, pieces: list[Piece]) -> None:
        """Overwrite ``[start, start + total length)`` with ``pieces``."""
        if len(pieces) <= 2:
            for length, idx0, mask in pieces:
                if length:
                    self.put(start, length, idx0, mask)
                    start += length
            return
        # many pieces (e.g. a whole gathered output): one splice, not one per piece
        lengths, pidx, pmask = zip(*pieces)
        if 0 in lengths:
            pieces = [piece for piece in pieces if piece[0]]
            if not pieces:
                return
            lengths, pidx, pmask = zip(*pieces)
        starts, idxs, masks = self.starts, self.idxs, self.masks
        end = start + sum(lengths)
        nseg = len(starts)
        i = bisect_right(starts, start) - 1
        j = bisect_right(starts, end - 1, i) - 1
        lo = i - 1 if i > 0 else 0
        hi = j + 2 if j + 1 < nseg else nseg
        ns: list[int] = []
        ni: list[int] = []
        nm: list[int] = []
        if lo < i:
            ns.append(starts[lo])
            ni.append(idxs[lo])
            nm.append(masks[lo])
        if starts[i] < start:
            ns.append(starts[i])
            ni.append(idxs[i])
            nm.append(masks[i])
        ns += accumulate(lengths[:-1], initial=start)
        ni += pidx
        nm += pmask
        seg_end = starts[j + 1] if j + 1 < nseg else self.size
        if end < seg_end:
            ns.append(end)
            ni.append(idxs[j] + end - starts[j])
            nm.append(masks[j])
        if hi > j + 1:
            ns.append(starts[j + 1])
            ni.append(idxs[j + 1])
            nm.append(masks[j + 1])
        # drop runs that continue their predecessor (rare: pieces read from memory are
        # already maximal, so usually only the ends can merge)
        if not any(map(eq, nm[1:], nm)) or not [
                k for k in range(1, len(ns)) if nm[k] == nm[k - 1] and (
                    nm[k] == 0 or ni[k] == ni[k - 1] + ns[k] - ns[k - 1])]:
            starts[lo:hi] = ns
            idxs[lo:hi] = ni
            masks[lo:hi] = nm
            return
        ms, mi, mm = [ns[0]], [ni[0]], [nm[0]]
        for k in range(1, len(ns)):
            mask = nm[k]
            if mask == mm[-1] and (mask == 0 or ni[k] == mi[-1] + ns[k] - ms[-1]):
                continue  # continues the previous run
            ms.append(ns[k])
            mi.append(ni[k])
            mm.append(mask)
        starts[lo:hi] = ms
        idxs[lo:hi] = mi
        masks[lo:hi] = mm

    def put(self, start: int, length: int, idx0: int, mask: int) -> None:
        """Overwrite ``[start, start+length)`` (length > 0) with one run, merging it with
        neighbours it continues so that the segment lists stay short."""
        starts, idxs, masks = self.starts, self.idxs, self.masks
        end = start + length
        nseg = len(starts)
        i = bisect_right(starts, start) - 1          # segment holding the first element
        j = bisect_right(starts, end - 1, i) - 1     # segment holding the last element
        if i == j and starts[i] == start and (starts[i + 1] if i + 1 < nseg else self.size) == end:
            # exactly one whole segment is replaced (e.g. a reused scratch slot): unless the new
            # run continues a neighbour, overwrite it in place
            if not ((i > 0 and masks[i - 1] == mask
                     and (mask == 0 or idxs[i - 1] + start - starts[i - 1] == idx0))
                    or (i + 1 < nseg and masks[i + 1] == mask
                        and (mask == 0 or idxs[i + 1] == idx0 + length))):
                idxs[i] = idx0
                masks[i] = mask
                return
        ins_s: list[int] = []
        ins_i: list[int] = []
        ins_m: list[int] = []
        # left side: either the head of segment i survives, or segment i-1 is the neighbour
        if starts[i] < start:
            lo = i + 1
            left = i
        else:
            lo = i
            left = i - 1
        if left >= 0 and masks[left] == mask and (
                mask == 0 or idxs[left] + start - starts[left] == idx0):
            pass  # the new run continues its left neighbour: no new segment starts here
        else:
            ins_s.append(start)
            ins_i.append(idx0)
            ins_m.append(mask)
        # right side: either the tail of segment j survives, or segment j+1 is the neighbour
        seg_end = starts[j + 1] if j + 1 < nseg else self.size
        hi = j + 1
        if end < seg_end:
            tail_idx, tail_mask = idxs[j] + end - starts[j], masks[j]
            if not (tail_mask == mask and (mask == 0 or tail_idx == idx0 + length)):
                ins_s.append(end)
                ins_i.append(tail_idx)
                ins_m.append(tail_mask)
        elif hi < nseg and masks[hi] == mask and (mask == 0 or idxs[hi] == idx0 + length):
            hi += 1  # segment j+1 continues the new run: drop its start
        starts[lo:hi] = ins_s
        idxs[lo:hi] = ins_i
        masks[lo:hi] = ins_m


def combine(a: list[Piece], b: list[Piece]) -> tuple[list[Piece], list[tuple[int, int, str]]]:
    """Reduce two equally long piece lists element-wise.

    Returns the result and the problems found as (first element, length, what), positions
    relative to the start of the operands.
    """
    if len(a) == 1 and len(b) == 1:
        n, xa, ma = a[0]
        _, xb, mb = b[0]
        if ma and mb and xa == xb and not ma & mb:
            return [(n, xa, ma | mb)], []
    out: list[Piece] = []
    problems: list[tuple[int, int, str]] = []
    ia = ib = 0
    la, xa, ma = a[0]
    lb, xb, mb = b[0]
    pos = 0
    while True:
        n = la if la < lb else lb
        if n:
            if not ma or not mb:
                problems.append((pos, n, "undefined"))
            elif xa != xb:
                problems.append((pos, n, f"mixes source elements {xa}.. and {xb}.."))
            elif ma & mb:
                problems.append((pos, n, "duplicate " + format_ranks(ma & mb)))
            out.append((n, xa, ma | mb))
        pos += n
        la -= n
        lb -= n
        xa += n
        xb += n
        if la == 0:
            ia += 1
            if ia == len(a):
                break
            la, xa, ma = a[ia]
        if lb == 0:
            ib += 1
            if ib == len(b):
                break
            lb, xb, mb = b[ib]
    return out, problems


def format_ranks(mask: int) -> str:
    """``{0-3,7}`` style listing of the ranks in a mask."""
    parts = []
    r = 0
    while mask:
        if mask & 1:
            start = r
            while mask & 2:
                mask >>= 1
                r += 1
            parts.append(str(start) if start == r else f"{start}-{r}")
        mask >>= 1
        r += 1
    return "{" + ",".join(parts) + "}"
