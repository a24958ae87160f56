"""The direct (one-shot) allreduce, allgather and pairwise-exchange reduce-scatter over every
rank, as rows (:mod:`.rows`).

The same schedules as :mod:`.direct`'s cores run on the whole communicator, written for many
ranks at once: each moves O(p^2) messages in all. The cores stay for the hierarchical
algorithms, which run them on sub-groups; the test suite holds these emitters to the programs
the cores build.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .rows import IN, OUT, SCR, Rows, RowsBuilder
from .schedule import Problem


def _pairs(ranks: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank, peer) for every emitted rank and every other rank, peers ascending."""
    rank, peer = np.broadcast_arrays(ranks[:, None], np.arange(p)[None, :])
    others = rank != peer
    return rank[others], peer[others]


def allreduce_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """One-shot allreduce: every input to everyone in one step, reduced in rank order (the
    own input first)."""
    p, n = problem.nranks, problem.count
    b = RowsBuilder(p)
    if p == 1:
        b.copy(0, ranks, (IN, 0, n), (OUT, 0, n))
        return b.finish()
    rank, peer = _pairs(ranks, p)
    slot = np.where(peer < rank, peer, peer - 1) * n
    b.send(0, rank, peer, (IN, 0, n), seq=peer)
    b.recv(0, rank, peer, (SCR, slot, n), seq=peer)
    first = peer == np.where(rank == 0, 1, 0)        # the first peer reduces into the input
    b.reduce(0, rank, (OUT, 0, n), (np.where(first, IN, OUT), 0, n), (SCR, slot, n), seq=peer)
    return b.finish()


def allgather_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Every rank's block to every other rank in one step."""
    p, count = problem.nranks, problem.count
    b = RowsBuilder(p)
    b.copy(0, ranks, (IN, 0, count), (OUT, ranks * count, count))
    rank, peer = _pairs(ranks, p)
    b.send(0, rank, peer, (IN, 0, count), seq=peer)
    b.recv(0, rank, peer, (OUT, peer * count, count), seq=peer)
    return b.finish()


def reduce_scatter_rows(problem: Problem, ranks: np.ndarray, options: Mapping[str, Any]) -> Rows:
    """Pairwise exchange: in step ``s`` rank ``i`` sends block ``i+s`` to rank ``i+s`` and adds
    the block it receives from ``i-s``."""
    p, count = problem.nranks, problem.count
    b = RowsBuilder(p)
    if p == 1:
        b.copy(0, ranks, (IN, 0, count), (OUT, 0, count))
        return b.finish()
    s = np.arange(1, p)[None, :]
    rank = ranks[:, None]
    to, frm = (rank + s) % p, (rank - s) % p
    b.send(s - 1, rank, to, (IN, to * count, count))
    b.recv(s - 1, rank, frm, (SCR, 0, count))
    first = s == 1
    b.reduce(s - 1, rank, (OUT, 0, count),
             (np.where(first, IN, OUT), np.where(first, rank * count, 0), count),
             (SCR, 0, count))
    return b.finish()
