"""Bruck's allgather: ``ceil(log2 p)`` steps for any ``p``, no fold needed.

In step ``k`` (distance ``d = 2**k``) member ``i`` sends what it has gathered so far, the data of
members ``i .. i+n-1`` (mod ``p``, ``n = min(d, p - d)``), to member ``i - d`` and receives the
data of members ``i+d .. i+d+n-1`` from member ``i + d``. Classic Bruck keeps the data rotated in
a temporary buffer and rotates it into place at the end; here every block goes straight to its
final place in the output, so a range that wraps around the end of the group travels as two
messages instead (the same bytes, no extra copy, at most one more message per step).
"""

from __future__ import annotations

from ._build import Builder, Group, Partition, Region, log2_ceil, unit_runs
from ._flat import flat_allgather
from .ring import UnitsOf, _place_own
from .schedule import Slice


def allgather_span(g: int) -> int:
    return max(1, log2_ceil(g))


def allgather_core(b: Builder, grp: Group, part: Partition, region: Region, units: UnitsOf,
                   own: Slice | None, t0: int) -> None:
    """Bruck allgather; arguments as in :func:`.ring.allgather_core`."""
    g, i = grp.size, grp.me

    def runs(first: int, n: int) -> list[Slice]:
        """Data of members first .. first+n-1, wrapping around the group."""
        first %= g
        end = first + n
        if end <= g:
            return unit_runs(units(first, end), part, region)
        return unit_runs(units(0, end - g), part, region) + unit_runs(units(first, g), part,
                                                                      region)

    if own is not None:
        _place_own(b, t0, own, runs(i, 1))
    k, d = 0, 1
    while d < g:
        n = min(d, g - d)
        if k == 0 and own is not None:
            b.send(t0, grp.peer(i - d), own)
        else:
            b.send_all(t0 + k, grp.peer(i - d), runs(i, n))
        b.recv_all(t0 + k, grp.peer(i + d), runs(i + d, n))
        k, d = k + 1, d * 2


allgather = flat_allgather(allgather_core)
