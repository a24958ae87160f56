"""--algo auto runs the winning variant: the options the model chose reach the schedule and the
row, for that size only (one rank on COMM_SELF; the model's choice is stubbed)."""

from __future__ import annotations

from collbench.backends import Placement
from collbench.backends.mpi import MpiBackend
from collbench.run.harness import Harness, make_plan
from collbench.run.session import make_spec
from collbench.run.watchdog import Activity, Watchdog


class _ChosenVariant:
    """Stands in for analysis.select.Selector: ring with two channels at 4 KiB, plain ring else."""

    auto_from = None

    def choose_variant(self, collective, size, dtype, op, in_place=False):
        return ("ring", {"channels": 2} if size == 4096 else {}, "model:stub")


def test_auto_rows_carry_the_chosen_options():
    from mpi4py import MPI

    spec = make_spec("allreduce", sizes=[64, 4096], algorithms="auto", iterations=2, warmup=1,
                     placements=(Placement.OUT_OF_PLACE,), auto_profile="generic")
    backend = MpiBackend(MPI.COMM_SELF)
    backend.reserve(spec.max_bytes, list(spec.dtypes))
    ctrl = MPI.COMM_SELF.Dup()
    activity = Activity(rank=0)
    harness = Harness(spec, backend, ctrl, Watchdog(ctrl.Dup(), 30, activity, False), activity)
    harness._selector = _ChosenVariant()
    plan = make_plan(spec, backend)
    rows = [row for group in plan.groups for _, by_placement in harness.run_group(group, 2)
            for row in by_placement.values()]
    assert [(r.bytes, r.algorithm, r.options, r.selected_by, r.wrong) for r in rows] == [
        (64, "ring", None, "model:stub", 0), (4096, "ring", {"channels": 2}, "model:stub", 0)]
