"""`--nccl-algo` and `--nccl-proto` checked before a job starts.

NCCL reads ``NCCL_ALGO`` and ``NCCL_PROTO`` when a communicator is created, so a mistake shows
only after the queue wait, or not at all: NCCL refuses an entry after the first without a
function prefix (``ncclInvalidUsage`` at init), but ignores names it does not know, so a typo such
as ``Rign`` silently measures NCCL's own choice. collbench uses the grammar of its NCCL model
(:func:`~collbench.analysis.model.nccl.enabled_by_env`, NCCL 2.30's parser): the first is an
error, the second a warning (a newer NCCL may know more names).
"""

from __future__ import annotations

from ..errors import UsageError


def selection_warnings(algo: str | None, proto: str | None) -> list[str]:
    """Warnings about ``--nccl-algo`` / ``--nccl-proto`` values NCCL would ignore.

    Raises:
        UsageError: A value NCCL refuses (an entry after the first without a function prefix).
    """
    from ..analysis.model import nccl

    warnings = []
    for flag, value, names in (("--nccl-algo", algo, nccl.NCCL_ALGORITHM_NAMES),
                               ("--nccl-proto", proto, nccl.NCCL_PROTOCOL_NAMES)):
        if value is None:
            continue
        try:
            listed = nccl.listed_names(value)
        except ValueError as exc:
            raise UsageError(f"{flag} {value}: {exc} (NCCL refuses it when the communicator is "
                             f"created)") from None
        unknown = [name for name in listed if name.lower() not in names]
        if unknown:
            what = "is not a name" if len(unknown) == 1 else "are not names"
            warnings.append(f"{flag} {value}: NCCL ignores names it does not know, and "
                            f"{', '.join(unknown)} {what} NCCL 2.30 knows ({', '.join(names)}, any "
                            f"case): unless your NCCL is newer, the run measures as if "
                            f"{'it were' if len(unknown) == 1 else 'they were'} not there")
    return warnings

