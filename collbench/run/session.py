"""A measurement session: one RunSpec on one communicator, as a library call.

:class:`Session` owns what a sweep needs besides the harness (the backend, the plan, the
watchdog) and yields rows as they are measured. ``collbench run`` (:mod:`.job`) is a thin
adapter that prints tables and writes files around it; :func:`measure` is the same thing for a
Python user, a notebook or a test::

    from mpi4py import MPI
    import collbench
    spec = collbench.make_spec("allreduce", sizes=[8, 1 << 20], algorithms="native,ring")
    for row in collbench.measure(MPI.COMM_WORLD, spec):   # rows arrive on rank 0 only
        print(row.algorithm, row.bytes, row.busbw_gbps)
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from ..algorithms import Collective, Layout
from ..backends import Backend, Placement, make_backend
from ..dtypes import parse_dtypes, parse_ops
from ..errors import UsageError
from ..results.files import Row
from .harness import Group, Harness, Plan, make_plan
from .spec import RunSpec
from .watchdog import Activity, Watchdog


class Session:
    """Backend, plan and watchdog for one spec on ``comm`` (collective: every rank creates it).

    Args:
        comm: the communicator to measure on (the backend duplicates it).
        spec: what to measure.
        layout: which ranks share a node (None: one node), for hierarchical algorithms.
        gpu_map: device index per local rank (GPU backends).
        thread_multiple: whether MPI runs at THREAD_MULTIPLE (how the watchdog may abort).
        activity: shared description of the current work, for error messages.
        ctrl: a duplicate of ``comm`` for control traffic (default: one is made).
    """

    def __init__(self, comm: Any, spec: RunSpec, layout: Layout | None = None,
                 gpu_map: tuple[int, ...] | None = None, thread_multiple: bool = False,
                 activity: Activity | None = None, ctrl: Any = None) -> None:
        self.spec = spec
        # collbench's own control traffic never meets a measured message
        self.ctrl = ctrl if ctrl is not None else comm.Dup()
        self.rank = self.ctrl.Get_rank()
        self.activity = activity or Activity(rank=self.rank)
        self.activity.phase = f"{spec.backend} backend initialization"
        self.backend: Backend = make_backend(
            spec.backend, comm, layout=layout, algorithm_options=dict(spec.algorithm_options),
            graph_replays=spec.graph_replays, gpu_map=gpu_map, device=spec.device,
            stage_host=spec.stage_host, executor=spec.executor)
        self.plan: Plan = agree(self.ctrl, lambda: make_plan(spec, self.backend))
        self.watchdog = Watchdog(self.ctrl.Dup(), spec.timeout, self.activity, thread_multiple)
        self.harness: Harness | None = None

    def reserve(self) -> None:
        """Allocate the largest buffers once (collective; a failure anywhere fails everywhere)."""
        self.activity.phase = "buffer allocation"
        agree(self.ctrl, lambda: self.backend.reserve(self.spec.max_bytes, list(self.spec.dtypes)))

    def groups(self, on_progress: Any = None
               ) -> Iterator[tuple[Group, Iterator[tuple[int, dict[Placement, Row]]]]]:
        """Each planned group with an iterator over its sizes: (size, rows by placement); rows
        are filled on rank 0 only."""
        self.harness = Harness(self.spec, self.backend, self.ctrl, self.watchdog, self.activity,
                               on_progress=on_progress)
        for group in self.plan.groups:
            yield group, self.harness.run_group(group, self.plan.measurements)

    @property
    def size_skips(self) -> dict[str, list[str]]:
        """Sizes that a limit of the backend left out, by reason (after :meth:`groups`)."""
        return self.harness.size_skips if self.harness else {}

    def close(self) -> None:
        self.watchdog.close()
        self.backend.close()


def agree(comm: Any, action: Any) -> Any:
    """Run ``action`` on every rank; if it raises UsageError anywhere, raise it everywhere.

    Checks that only some ranks can make (rank 0's file, one node's memory) must not leave the
    other ranks waiting in a collective: they all learn the first error and exit together.
    """
    try:
        result, error = action(), None
    except UsageError as exc:
        result, error = None, str(exc)
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise UsageError(errors[0])
    return result


def measure(comm: Any, spec: RunSpec, layout: Layout | None = None,
            gpu_map: tuple[int, ...] | None = None) -> Iterator[Row]:
    """Measure ``spec`` on ``comm`` (collective: call it on every rank).

    Yields every row on rank 0, in sweep order; other ranks yield nothing but must iterate to
    the end too. Nothing is printed or written: that is the CLI's business.

    Raises:
        UsageError: the spec cannot run here (raised on every rank).
    """
    session = Session(comm, spec, layout, gpu_map)
    try:
        session.reserve()
        for _group, sizes in session.groups():
            for _size, rows in sizes:
                yield from rows.values()
    finally:
        session.close()


def make_spec(collectives: str | Sequence[str], sizes: Iterable[int], dtypes: str = "float32",
              ops: str = "sum", algorithms: str | Sequence[str] = "native", **fields: Any) -> RunSpec:
    """A RunSpec from the spellings the CLI accepts (``"allreduce,allgather"``, ``"all"`` dtypes,
    ``"ring,native"``); other RunSpec fields pass through (``iterations=20``, ``backend=...``).

    Raises:
        UsageError: an unknown name.
    """
    from ..execute.programs import check_algorithm_names

    names = collectives.split(",") if isinstance(collectives, str) else list(collectives)
    try:
        parsed = tuple(dict.fromkeys(Collective.parse(n) for n in names if n.strip()))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    algos = algorithms.split(",") if isinstance(algorithms, str) else list(algorithms)
    return RunSpec(collectives=parsed, sizes=tuple(int(s) for s in sizes),
                   dtypes=parse_dtypes(dtypes), ops=parse_ops(ops),
                   algorithms=check_algorithm_names([a.strip() for a in algos if a.strip()], ("auto",)),
                   **fields)
