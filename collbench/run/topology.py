"""Which ranks share a node, read from the communicator (MPI shared-memory split)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from ..algorithms import Layout


@dataclass(frozen=True)
class NodeMap:
    """Node index of every rank, and a name per node (SLURMD_NODENAME, else the hostname)."""

    node_of_rank: tuple[int, ...]
    node_names: tuple[str, ...]

    @property
    def nnodes(self) -> int:
        return len(self.node_names)

    @property
    def ranks_per_node(self) -> list[int]:
        return [self.node_of_rank.count(k) for k in range(self.nnodes)]

    def layout(self) -> Layout:
        return Layout(tuple(tuple(r for r, k in enumerate(self.node_of_rank) if k == node)
                            for node in range(self.nnodes)))


def node_name() -> str:
    """This process's node: Slurm's node name when set (several slurmd can share a host)."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def discover(comm: Any) -> NodeMap:
    """Collective: every rank learns the node map. Nodes are numbered by their lowest rank."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    leader = local.bcast(comm.Get_rank(), root=0)
    local.Free()
    gathered = comm.allgather((leader, node_name()))
    leaders = sorted({lead for lead, _ in gathered})
    index = {lead: k for k, lead in enumerate(leaders)}
    names = tuple(gathered[lead][1] for lead in leaders)
    return NodeMap(tuple(index[lead] for lead, _ in gathered), names)


def emulated(nranks: int, ranks_per_node: int) -> NodeMap:
    """Pretend consecutive blocks of ``ranks_per_node`` ranks are nodes (tests and labs)."""
    node_of_rank = tuple(r // ranks_per_node for r in range(nranks))
    nnodes = (nranks + ranks_per_node - 1) // ranks_per_node
    return NodeMap(node_of_rank, tuple(f"emulated-node{k}" for k in range(nnodes)))
