"""Building blocks for generators: a per-rank program builder, vector partitions, groups.

Generators write one rank's program through a :class:`Builder`. The algorithm cores work on
*groups* (an ordered list of global ranks, so the same code runs on the whole communicator or on
a node / a set of same-index ranks inside a hierarchical algorithm), on *regions* (the start of a
contiguous vector in one buffer) and on *partitions* (how a vector splits into blocks).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from .schedule import Buf, Copy, Program, Recv, Reduce, Send, Slice, Step

# A set of unit (block) indices as sorted, disjoint, non-adjacent half-open ranges.
Units = tuple[tuple[int, int], ...]


# Slices are immutable, and schedules reuse the same few ranges on every rank: interning them
# makes generation several times cheaper than building a new dataclass each time.
_SLICES: dict[Buf, dict[tuple[int, int], Slice]] = {buf: {} for buf in Buf}
_SLICE_CACHE_LIMIT = 1 << 16


def make_slice(buf: Buf, offset: int, length: int) -> Slice:
    """``Slice(buf, offset, length)``, shared with earlier identical requests."""
    cache = _SLICES[buf]
    key = (offset, length)
    slc = cache.get(key)
    if slc is None:
        if len(cache) >= _SLICE_CACHE_LIMIT:
            cache.clear()
        slc = cache[key] = Slice(buf, offset, length)
    return slc


class Region:
    """A vector that starts at element ``offset`` of ``buf``."""

    __slots__ = ("buf", "offset", "_cache")

    def __init__(self, buf: Buf, offset: int) -> None:
        self.buf = buf
        self.offset = offset
        self._cache = _SLICES[buf]

    def __repr__(self) -> str:
        return f"Region({self.buf}, {self.offset})"

    def at(self, off: int, length: int) -> Slice:
        """The slice of ``length`` elements at offset ``off`` of the vector."""
        key = (self.offset + off, length)
        slc = self._cache.get(key)
        if slc is None:
            slc = make_slice(self.buf, key[0], length)
        return slc


INPUT = Region(Buf.INPUT, 0)
OUTPUT = Region(Buf.OUTPUT, 0)


class Group(NamedTuple):
    """An ordered set of global ranks and this rank's index in it."""

    members: Sequence[int]
    me: int

    @property
    def size(self) -> int:
        return len(self.members)

    def peer(self, index: int) -> int:
        """Global rank of member ``index`` (taken modulo the group size)."""
        return self.members[index % len(self.members)]


def world(nranks: int, rank: int) -> Group:
    """The group of every rank, in rank order."""
    return Group(range(nranks), rank)


class Partition:
    """A vector of ``n`` elements cut into ``k`` consecutive blocks, nearly equal in size.

    Block ``i`` starts at ``i * (n // k) + min(i, n % k)``: the first ``n % k`` blocks hold one
    element more. Blocks may be empty when ``n < k``.
    """

    __slots__ = ("n", "k", "_q", "_r")

    def __init__(self, n: int, k: int) -> None:
        self.n, self.k = n, k
        self._q, self._r = divmod(n, k)

    def off(self, i: int) -> int:
        return i * self._q + (i if i < self._r else self._r)

    def len(self, i: int) -> int:
        return self._q + (1 if i < self._r else 0)

    def span(self, i: int, j: int) -> tuple[int, int]:
        """(offset, length) of blocks ``i .. j-1`` together."""
        start = self.off(i)
        return start, self.off(j) - start

    def max_len(self) -> int:
        return self._q + (1 if self._r else 0)

    def offsets(self) -> list[int]:
        """All ``k + 1`` block boundaries (cheaper than many :meth:`off` calls in a loop)."""
        off = self.off
        return [off(i) for i in range(self.k + 1)]

    def slices(self, region: "Region") -> list[Slice]:
        """The slice of every block inside ``region`` (empty blocks included)."""
        offs = self.offsets()
        at = region.at
        return [at(offs[i], offs[i + 1] - offs[i]) for i in range(self.k)]


class Merged(Partition):
    """A coarser partition: block ``i`` is blocks ``bound(i) .. bound(i+1)-1`` of ``inner``."""

    __slots__ = ("inner", "bound")

    def __init__(self, inner: Partition, k: int, bound: Callable[[int], int]) -> None:
        self.inner, self.bound = inner, bound
        self.n, self.k = inner.n, k

    def off(self, i: int) -> int:
        return self.inner.off(self.bound(i))

    def len(self, i: int) -> int:
        return self.off(i + 1) - self.off(i)

    def max_len(self) -> int:
        return max((self.len(i) for i in range(self.k)), default=0)


class Fold(NamedTuple):
    """MPICH's reduction of any group size to the largest power of two ``pof2`` below it.

    The first ``2 * rem`` members pair up as (even, odd); the odd member of each pair survives
    with new rank ``i // 2`` and acts for both, the even one sits out until its result comes
    back. The other members keep going with new rank ``i - rem``.
    """

    size: int
    pof2: int
    rem: int

    @classmethod
    def of(cls, size: int) -> "Fold":
        pof2 = 1 << (size.bit_length() - 1)
        return cls(size, pof2, size - pof2)

    def newrank(self, i: int) -> int:
        """New rank of member ``i``, or -1 for an even member that sits out."""
        if i < 2 * self.rem:
            return i // 2 if i % 2 else -1
        return i - self.rem

    def bound(self, n: int) -> int:
        """First member whose data new rank ``n`` holds (``bound(pof2) == size``)."""
        return 2 * n if n <= self.rem else n + self.rem

    def member(self, n: int) -> int:
        """The member that acts as new rank ``n``."""
        return 2 * n + 1 if n < self.rem else n + self.rem


def log2_ceil(n: int) -> int:
    """Smallest ``L`` with ``2**L >= n`` (0 for n <= 1)."""
    return (n - 1).bit_length() if n > 1 else 0


def default_chunks(count: int) -> int:
    """Default number of pipeline chunks for ``count`` elements.

    The alpha-beta optimum of a pipelined tree or chain is ``k ~ sqrt(beta * n * depth / alpha)``;
    with ~5 us latency, ~10 GB/s, 4-byte elements and a depth of a few hops that is about
    ``sqrt(count / 8192)``: 1 chunk up to ~8 K elements, 6 at 256 K, 45 at 16 M (capped at 64).
    """
    return max(1, min(64, round(math.sqrt(count / 8192))))


MAX_CHUNKS = 1024
"""The most pipeline chunks a schedule takes (the default stops at 64): every chunk is a step
of every rank's program, so a mistyped ``chunks=10**8`` would build programs for minutes."""


def chunks_problem(options: Mapping[str, Any]) -> str | None:
    """Why ``options["chunks"]`` is not None or a whole number in 1..:data:`MAX_CHUNKS`."""
    k = options.get("chunks")
    if k is not None and (not isinstance(k, int) or isinstance(k, bool)
                          or not 1 <= k <= MAX_CHUNKS):
        return f"chunks must be a whole number from 1 to {MAX_CHUNKS} (got {k!r})"
    return None


def unit_runs(units: Units, part: Partition, region: Region) -> list[Slice]:
    """The non-empty slices holding the given units (blocks of ``part``) inside ``region``."""
    out = []
    for a, b in units:
        off, length = part.span(a, b)
        if length:
            out.append(region.at(off, length))
    return out


def union(*sets: Units) -> Units:
    """Union of unit sets, normalised (sorted, adjacent ranges merged)."""
    ranges = sorted(r for s in sets for r in s if r[0] < r[1])
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return tuple(merged)


def units_of(indices: Sequence[int]) -> Units:
    """Unit set of individual unit indices."""
    return union(*(((u, u + 1),) for u in indices))


class Builder:
    """Collects one rank's steps; drops empty messages and no-op local operations.

    Every method takes the global step index the operation belongs to. Zero-length sends and
    receives are never emitted (both sides of a message compute the same length, so both drop
    it). The scratch length is the furthest scratch element any operation touches.
    """

    __slots__ = ("rank", "_steps", "_scratch")

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self._steps: dict[int, tuple[list, list, list]] = {}
        self._scratch = 0

    def _at(self, t: int) -> tuple[list, list, list]:
        entry = self._steps.get(t)
        if entry is None:
            entry = self._steps[t] = ([], [], [])
        return entry

    def send(self, t: int, peer: int, src: Slice) -> None:
        if src.length:
            if src.buf is _SCRATCH and src.offset + src.length > self._scratch:
                self._scratch = src.offset + src.length
            entry = self._steps.get(t)
            if entry is None:
                entry = self._steps[t] = ([], [], [])
            entry[0].append(Send(peer, src))

    def recv(self, t: int, peer: int, dst: Slice) -> None:
        if dst.length:
            if dst.buf is _SCRATCH and dst.offset + dst.length > self._scratch:
                self._scratch = dst.offset + dst.length
            entry = self._steps.get(t)
            if entry is None:
                entry = self._steps[t] = ([], [], [])
            entry[1].append(Recv(peer, dst))

    def copy(self, t: int, src: Slice, dst: Slice) -> None:
        if src.length and src != dst:
            for slc in (src, dst):
                if slc.buf is _SCRATCH and slc.offset + slc.length > self._scratch:
                    self._scratch = slc.offset + slc.length
            self._at(t)[2].append(Copy(src, dst))

    def reduce(self, t: int, dst: Slice, a: Slice, b: Slice) -> None:
        if dst.length:
            for slc in (dst, a, b):
                if slc.buf is _SCRATCH and slc.offset + slc.length > self._scratch:
                    self._scratch = slc.offset + slc.length
            self._at(t)[2].append(Reduce(dst, a, b))

    def shared_local(self, t: int, ops: "SharedLocal") -> None:
        """Append local operations built once for many ranks (:func:`shared_copies`)."""
        if ops.ops:
            if ops.scratch_end > self._scratch:
                self._scratch = ops.scratch_end
            self._at(t)[2].extend(ops.ops)

    def send_all(self, t: int, peer: int, slices: Sequence[Slice]) -> None:
        for slc in slices:
            self.send(t, peer, slc)

    def recv_all(self, t: int, peer: int, slices: Sequence[Slice]) -> None:
        for slc in slices:
            self.recv(t, peer, slc)

    def build(self) -> Program:
        steps = []
        for t in sorted(self._steps):
            s, r, loc = self._steps[t]
            if s or r or loc:
                steps.append(Step(t, tuple(s), tuple(r), tuple(loc)))
        return Program(self.rank, tuple(steps), self._scratch)


_SCRATCH = Buf.SCRATCH


class SharedLocal(NamedTuple):
    """Local operations that every rank of a schedule performs alike (a packing or unpacking
    pass), built once and shared: operations are immutable, and a pass of ``p`` copies on each
    of ``p`` ranks would otherwise cost ``p**2`` Builder calls."""

    ops: tuple[Copy, ...]
    scratch_end: int


def shared_copies(pairs: Sequence[tuple[Slice, Slice]]) -> SharedLocal:
    """The copies ``src -> dst`` of ``pairs`` with :meth:`Builder.copy`'s rules (empty copies
    and self-copies dropped), and how far into scratch they reach."""
    ops = tuple(Copy(src, dst) for src, dst in pairs if src.length and src != dst)
    end = max((slc.offset + slc.length for op in ops for slc in (op.src, op.dst)
               if slc.buf is _SCRATCH), default=0)
    return SharedLocal(ops, end)
