"""Input patterns whose collective results are exact, and the checks that count wrong elements.

Every rank fills its input from a hash of (rank, element index mod P, seed), so the expected
result of any reduction depends only on the index modulo the period P: it is computed once over
P residues and tiled. P is 1021 (prime, so blocks of power-of-two sizes do not repeat) unless
the rank count needs more residues to show every rank (below).

Exactness. Values are small integers chosen so that every partial result is representable
whatever the reduction order, which makes sum, prod, max and min exact for every dtype and
every order an algorithm may use:
  * sum/avg: |value| × (contributors + 1) ≤ the largest exactly representable integer of the
    type (bfloat16 256, float16 2048, int8 127, ...): exact even with one contribution too
    many. When there are more ranks than that budget, only a *band* of ranks per element
    contributes, non-zero values.
  * prod: factors ±1 and ±2 (1, 2 and 4 for unsigned types), the product times one factor
    more still below the limit.
  * max/min and data movement: integers spread over the type's exact range.
The one inexact case is floating-point avg: implementations may pre-multiply by 1/n (NCCL) or
divide the sum (MPI-style post-division), so we accept |got − expected| ≤ 2 ulp, as nccl-tests
does; integer avg is the truncated quotient and exact. Comparison is bitwise everywhere else.

Every rank is visible. A check must fail when an algorithm drops or repeats one rank's
contribution, at any rank count (up to 16384 is tested), so:
  * sum/avg/prod: the bands of consecutive elements are consecutive runs of ranks (the band of
    element t starts ``t × band`` ranks after a seed-dependent rank), so within
    ``ceil(nranks / band)`` elements every rank contributes somewhere, and a band member's
    value is never the identity (never 0 for sum, never 1 for prod). Dropping or repeating it
    changes that element: by a non-zero exact amount for sum, a factor of 2 or a sign for prod.
    Float avg keeps sums below 1/(6 eps) (and values above the type's tiny · n) so that the
    change exceeds the 2-ulp tolerance; integer avg uses multiples of the rank count, so the
    quotient is exact and moves by at least 1.
  * max/min: element t has one *winner*, a rank holding a value above every other rank's, and
    one *loser* below every other; both cycle through all ranks, so P is at least the rank
    count (the next prime). Dropping a rank changes the element it wins. Repeating a
    contribution cannot change a max or a min (they are idempotent): no pattern detects it.
  * The exceptions are integer avg where twice the rank count exceeds the type's range (int8
    above 63 ranks, uint8 above 127): the exact sum of any pattern stays below the rank count,
    so every quotient is 0 whatever the algorithm adds up. Every rank still contributes.
Only the band members (or the winner and loser) differ from the identity, so the expected
result costs O(P × band) however many ranks there are, never more than O(P × ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil, floor, isqrt
from typing import Sequence

import ml_dtypes
import numpy as np

from .algorithms import Collective, Problem
from .algorithms.collectives import Block, descriptor
from .algorithms.vcounts import Skew
from .dtypes import DType

# Period of the pattern in element index; prime so blocks of power-of-two sizes do not repeat.
PERIOD = 1021

# Largest integer magnitude each type holds exactly (and never overflows in a partial result).
_EXACT_LIMIT = {"int8": 127, "uint8": 255, "int32": 2**31 - 1, "uint32": 2**32 - 1,
                "int64": 2**62, "uint64": 2**63, "float16": 2048, "bfloat16": 256,
                "float32": 2**24, "float64": 2**53}
_VALUE_CAP = 100  # keep sums of small types readable and far from overflow
_MAX_DOUBLINGS = 16  # prod: at most 2**16 in magnitude, with room for one factor more
_MAX_BAND = 1024  # more contributors per element show nothing more and cost time
_CHUNK = 1 << 20  # values computed at once when reducing many ranks (bounds memory)


def _hash(rank: int | np.ndarray, residues: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """A well-mixed non-negative 31-bit integer per (rank, residue) (splitmix64 finalizer);
    ``rank`` and ``residues`` broadcast."""
    key = np.uint64((seed * 0x85EBCA77C2B2AE63 + salt * 0xD6E8FEB86659FD93 + 1) % 2**64)
    with np.errstate(over="ignore"):
        x = (np.asarray(residues).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.asarray(rank).astype(np.uint64) * np.uint64(0x632BE59BD9B4E019) + key)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(33)).astype(np.int64)


def _next_prime(n: int) -> int:
    while n < 2 or any(n % d == 0 for d in range(2, isqrt(n) + 1)):
        n += 1
    return n


@dataclass(frozen=True)
class _Plan:
    """The shape of one (dtype, op, rank count) pattern.

    Attributes:
        period: P, the number of residues.
        band: Ranks per element with a non-identity value (sum, avg, prod).
        lo, hi: Magnitude range of a band member's value, in units of ``unit``.
        unit: Integer avg: the rank count (the quotient is then exact); else 1.
        signed: Band values of sum/prod take random signs.
        doublings: prod, signed types: band positions below this contribute −1, 2 or −2,
            the others −1 (unsigned types: every member 2 or 4).
    """

    period: int
    band: int = 1
    lo: int = 1
    hi: int = 1
    unit: int = 1
    signed: bool = False
    doublings: int = 0


@lru_cache(maxsize=256)
def _plan(dtype: DType, op: str | None, nranks: int) -> _Plan:
    limit = _EXACT_LIMIT[dtype.name]
    if op in ("sum", "avg"):
        unit, budget, lo = 1, limit, 1
        if op == "avg" and dtype.is_float:
            # the change of one contribution, v / n, must clear the 2-ulp tolerance
            # (2 eps |avg| + tiny) plus the rounding of both results: v > 3 eps S + tiny n
            info = ml_dtypes.finfo(dtype.numpy)
            budget = min(limit, floor(1 / (6 * float(info.eps))))
            lo = ceil(0.75 + float(info.tiny) * nranks)
        elif op == "avg" and 2 * nranks <= limit:
            unit, budget = nranks, limit // nranks  # multiples of n: the quotient is exact
        wanted = min(nranks, max(_MAX_BAND, ceil(nranks / PERIOD)))
        hi = min(max(budget // (wanted + 1), lo), max(_VALUE_CAP, lo))
        band = max(1, min(wanted, budget // hi - 1))  # room for one contribution too many
        return _Plan(_period(nranks, band), band, lo, hi, unit,
                     signed=dtype.is_signed and op == "sum")
    if op == "prod":
        if dtype.is_signed:
            # up to ``doublings`` members take −1, 2 or −2 (2**(doublings+1) still fits); the
            # rest of the band takes −1: signs are free, so the band can cover every rank
            doublings = max(1, min(_MAX_DOUBLINGS, limit.bit_length() - 2))
            band = min(nranks, max(doublings, ceil(nranks / PERIOD)))
            return _Plan(_period(nranks, band), band, signed=True, doublings=doublings)
        # unsigned: only powers of two; members take 2 or 4, and a product of them times one
        # more 4 must fit
        doublings = min(_MAX_DOUBLINGS, limit.bit_length() - 1)
        band = min(nranks, max(1, (doublings - 2) // 2))
        return _Plan(_period(nranks, band), band, doublings=2 * band)
    if op in ("max", "min"):
        return _Plan(_period(nranks, 1))  # one winner and one loser per element
    return _Plan(PERIOD)


def _period(nranks: int, band: int) -> int:
    """The smallest prime period ≥ PERIOD whose bands cover every rank."""
    return _next_prime(max(PERIOD, ceil(nranks / band)))


def _seeded(seed: int, salt: int) -> int:
    """One non-negative number per seed (and salt): the seed-dependent offsets."""
    return int(_hash(0, np.zeros(1, dtype=np.int64), seed, salt)[0])


def _band_first(plan: _Plan, nranks: int, t: np.ndarray, seed: int) -> np.ndarray:
    """The first rank of element t's band: bands of consecutive elements follow each other."""
    return (t * plan.band + _seeded(seed, 1)) % nranks


def _band_position(plan: _Plan, nranks: int, rank: np.ndarray, t: np.ndarray,
                   seed: int) -> np.ndarray:
    """Where ``rank`` sits in element t's band (in the band when below ``plan.band``)."""
    return (rank - _band_first(plan, nranks, t, seed)) % nranks


def _extremes(dtype: DType, nranks: int, t: np.ndarray,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(winner, loser, top, bottom) of elements t: the winner holds ``top``, the loser
    ``bottom``, every other rank a value strictly between. Winners (and losers) of
    consecutive elements are consecutive ranks, so a period of ``nranks`` holds them all."""
    spread = min(_EXACT_LIMIT[dtype.name], 1 << 20)
    h = _hash(0, t, seed, salt=2)
    winner = (t + _seeded(seed, 3)) % nranks
    loser = (winner + 1 + _seeded(seed, 4) % max(nranks - 1, 1)) % nranks
    top = spread - h % 4
    bottom = (-spread if dtype.is_signed else 0) + (h >> 8) % 4
    return winner, loser, top, bottom


def _values(dtype: DType, op: str | None, nranks: int, rank: np.ndarray, t: np.ndarray,
            seed: int) -> np.ndarray:
    """The pattern value (int64) of ``rank`` at residue ``t``; the two broadcast."""
    plan = _plan(dtype, op, nranks)
    h = _hash(rank, t, seed)
    if op in ("sum", "avg", "prod"):
        in_band = _band_position(plan, nranks, rank, t, seed) < plan.band
        if op == "prod":
            if not plan.signed:
                return np.where(in_band, np.where(h & 1, 4, 2), 1)
            # the first band positions contribute −1, 2 or −2, the rest of the band −1
            doubling = _band_position(plan, nranks, rank, t, seed) < plan.doublings
            factor = np.where(doubling, np.array([-1, 2, -2])[h % 3], -1)
            return np.where(in_band, factor, 1)
        value = plan.lo + (h >> 1) % (plan.hi - plan.lo + 1)
        if plan.signed:
            value = np.where(h & 1, -value, value)
        return np.where(in_band, value * plan.unit, 0)
    if op in ("max", "min"):
        winner, loser, top, bottom = _extremes(dtype, nranks, t, seed)
        middle = bottom + 1 + h % np.maximum(top - bottom - 1, 1)
        return np.where(rank == winner, top, np.where(rank == loser, bottom, middle))
    # pure data movement: distinct-looking values across the exact range
    spread = min(_EXACT_LIMIT[dtype.name], 1 << 20)
    return h % (2 * spread + 1) - spread if dtype.is_signed else h % (spread + 1)


def _residue_values(dtype: DType, op: str | None, nranks: int, rank: int, seed: int) -> np.ndarray:
    """The P pattern values of ``rank`` (as int64), one per index residue."""
    t = np.arange(_plan(dtype, op, nranks).period, dtype=np.int64)
    return _values(dtype, op, nranks, np.array(rank, dtype=np.int64), t, seed)


def _combine(op: str, acc: np.ndarray | None, values: np.ndarray) -> np.ndarray:
    """``values`` (ranks × residues) reduced over ranks into ``acc``."""
    if op in ("sum", "avg"):
        part = values.sum(axis=0)
        return part if acc is None else acc + part
    if op == "prod":
        part = values.prod(axis=0)
        return part if acc is None else acc * part
    part = values.max(axis=0) if op == "max" else values.min(axis=0)
    if acc is None:
        return part
    return np.maximum(acc, part) if op == "max" else np.minimum(acc, part)


def _reduce_all(dtype: DType, op: str, nranks: int, seed: int) -> np.ndarray:
    """The exact reduction over every rank, from the band members (or extremes) only."""
    plan = _plan(dtype, op, nranks)
    t = np.arange(plan.period, dtype=np.int64)
    if op in ("max", "min"):
        winner, loser, top, bottom = _extremes(dtype, nranks, t, seed)
        return top if op == "max" or nranks == 1 else bottom
    band_first = _band_first(plan, nranks, t, seed)
    acc = None
    step = max(1, _CHUNK // plan.period)
    for first in range(0, plan.band, step):  # everyone outside the band is the identity
        positions = np.arange(first, min(plan.band, first + step), dtype=np.int64)
        ranks = (band_first[None, :] + positions[:, None]) % nranks
        acc = _combine(op, acc, _values(dtype, op, nranks, ranks, t[None, :], seed))
    assert acc is not None  # the band holds at least one rank
    return acc


def _reduce_some(dtype: DType, op: str, nranks: int, seed: int, ranks: Sequence[int]) -> np.ndarray:
    """The exact reduction over ``ranks`` only, every rank's values computed."""
    t = np.arange(_plan(dtype, op, nranks).period, dtype=np.int64)
    members = np.asarray(list(ranks), dtype=np.int64)
    acc = None
    step = max(1, _CHUNK // t.size)
    for first in range(0, members.size, step):
        chunk = members[first:first + step]
        acc = _combine(op, acc, _values(dtype, op, nranks, chunk[:, None], t[None, :], seed))
    if acc is None:
        raise ValueError("a reduction needs at least one rank")
    return acc


def _reduce_residues(dtype: DType, op: str | None, nranks: int, seed: int,
                     ranks: Sequence[int] | None = None) -> np.ndarray:
    """The exact reduction of the residue values of ``ranks`` (default: all), as ``dtype``."""
    if op is None:
        raise ValueError("a reduction needs an operator")
    if ranks is None or ranks == range(nranks):
        acc = _reduce_all(dtype, op, nranks, seed)
    else:
        acc = _reduce_some(dtype, op, nranks, seed, ranks)
    if op == "avg":
        if dtype.is_float:
            return (acc.astype(np.float64) / nranks).astype(dtype.numpy)
        acc = acc // nranks  # non-negative, so truncation == floor
    return acc.astype(dtype.numpy)


def _tile(residues: np.ndarray, start: int, length: int) -> np.ndarray:
    """Elements ``start .. start+length`` of the pattern whose period is ``residues``."""
    return residues[(start + np.arange(length, dtype=np.int64)) % residues.size]


def make_input(collective: Collective, dtype: DType, op: str | None, nranks: int, rank: int,
               length: int, seed: int) -> np.ndarray:
    """Rank ``rank``'s input of ``length`` elements for a check with ``seed``."""
    op = op if collective.reduces else None
    return _tile(_residue_values(dtype, op, nranks, rank, seed).astype(dtype.numpy), 0, length)


def expected_output(collective: Collective, dtype: DType, op: str | None, nranks: int, rank: int,
                    count: int, seed: int, root: int = 0,
                    skew: Skew | None = None) -> np.ndarray | None:
    """What ``rank``'s output must hold, or None when the collective defines none there.

    Built from the collective's postcondition blocks (``collbench.algorithms.collectives``):
    a reducing block is the exact reduction of its source ranks' residues, a copied block the
    source's own input pattern, each tiled from the block's input offset. ``skew``: alltoallv's
    count matrix (None: the default).
    """
    desc = descriptor(collective)
    problem = Problem(collective, nranks, count, root if desc.rooted else 0,
                      skew=skew if desc.vector else None)
    blocks = desc.blocks(problem, rank)
    if blocks is None:
        return None

    def values(block: Block) -> np.ndarray:
        if desc.reduces:
            residues = _reduce_residues(dtype, op, nranks, seed, block.sources)
        else:  # one source: its input repeats with the period, so PERIOD elements hold it all
            (source,) = block.sources
            residues = make_input(collective, dtype, None, nranks, source, PERIOD, seed)
        return _tile(residues, block.in_offset, block.length)

    parts = [values(block) for block in blocks]
    return np.concatenate(parts) if parts else np.empty(0, dtype.numpy)


def count_wrong(actual: np.ndarray, expected: np.ndarray, dtype: DType, op: str | None) -> int:
    """Number of elements of ``actual`` that differ from ``expected`` (bitwise; 2 ulp for float avg)."""
    if actual.shape != expected.shape:
        raise ValueError(f"output has {actual.size} elements, expected {expected.size}")
    return int(np.count_nonzero(wrong_elements(actual, expected, dtype, op)))


def wrong_elements(actual: np.ndarray, expected: np.ndarray, dtype: DType,
                   op: str | None) -> np.ndarray:
    """Which elements of ``actual`` differ from ``expected`` (the two broadcast): bitwise, or
    by more than 2 ulp for float avg."""
    if op == "avg" and dtype.is_float:
        got = actual.astype(np.float64)
        want = expected.astype(np.float64)
        info = ml_dtypes.finfo(dtype.numpy)  # numpy's finfo does not know bfloat16
        tolerance = 2 * float(info.eps) * np.abs(want) + float(info.tiny)
        return ~(np.abs(got - want) <= tolerance)
    bits = np.dtype(f"u{dtype.itemsize}")
    return actual.view(bits) != expected.view(bits)
