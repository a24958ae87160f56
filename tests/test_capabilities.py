"""`collbench list` and `collbench run` read one declaration per backend, so they agree."""

from __future__ import annotations

import pytest

from collbench.algorithms import Collective, Layout
from collbench.backends.base import OpRequest, Placement
from collbench.backends.capabilities import Environment, capability_rows, declared
from collbench.backends.mpi import MpiBackend
from collbench.dtypes import DTYPES

EVERYTHING_PRESENT = Environment(mpi=None, cupy=None, gpu=None, nccl=None, details=())


def _mpi_backend(nranks: int, layout: Layout | None) -> MpiBackend:
    """An MpiBackend's decision logic without a communicator (only its reasons are asked)."""
    from mpi4py import MPI

    backend = object.__new__(MpiBackend)
    backend.size, backend.layout, backend.algorithm_options, backend._mpi = nranks, layout, {}, MPI
    return backend


@pytest.mark.parametrize("nranks,per_node", [(4, None), (6, 3), (5, 2)])
def test_list_says_yes_exactly_where_the_mpi_backend_runs(nranks, per_node):
    layout = Layout.blocked(nranks, per_node) if per_node else None
    backend = _mpi_backend(nranks, layout)
    checked = 0
    for coll_name, algorithm, name, status in capability_rows(nranks, per_node, EVERYTHING_PRESENT):
        if name != "mpi":
            continue
        collective = Collective.parse(coll_name)
        placement = Placement.OUT_OF_PLACE if "out of place only" in status else Placement.IN_PLACE
        request = OpRequest(collective, algorithm, DTYPES["float32"], "sum" if collective.reduces else None,
                            1024, placement)
        runs = backend.reason(request) is None
        assert status.startswith("yes") == runs, (coll_name, algorithm, status, backend.reason(request))
        checked += 1
    assert checked > 20


def test_backend_only_algorithms_are_refused_elsewhere_with_the_owner_named():
    rows = {(c, a, b): s for c, a, b, s in capability_rows(4, None, EVERYTHING_PRESENT)}
    assert rows[("allreduce", "two_shot", "mpi")] == "cuda backend only"
    assert rows[("allreduce", "ring", "cuda")] == "yes"  # registered schedules run on the cuda interpreter
    assert rows[("broadcast", "native", "mpi")] == "yes (in place only)"
    backend = _mpi_backend(4, None)
    reason = backend.reason(OpRequest(Collective.ALLREDUCE, "two_shot", DTYPES["float32"], "sum", 8,
                                      Placement.IN_PLACE))
    assert reason and "has no two_shot" in reason


def test_every_backend_declares_its_capabilities_once():
    for name in ("mpi", "nccl", "cuda"):
        caps = declared(name)
        assert caps.backend == name
        assert caps.algorithm_names(Collective.ALLREDUCE)[0] == "native"
