"""Message tags of schedule messages, shared by every MPI executor.

The Python and the C executor must put the same messages on the wire (a program flattened for C
is checked against the lowered one, and both executors interoperate rank by rank), so the tag of
a step is computed here and nowhere else.
"""

from __future__ import annotations

# Far from collbench's control tags (iteration broadcasts, timing gathers use small tags).
TAG_BASE = 1000
# Wraps the step index: MPI guarantees tags up to 32767 only (MPI_TAG_UB may be that small).
TAG_SPAN = 30000


def step_tag(index: int) -> int:
    """The tag of every message of step ``index``: steps stay apart even when one pair of ranks
    talks in several steps (messages between a pair match in posting order within a tag)."""
    return TAG_BASE + index % TAG_SPAN
