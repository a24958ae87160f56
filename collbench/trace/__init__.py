"""Timelines of schedules: every step of every rank, next to the model's cost of that step.

* :mod:`.clock`: per-rank clock offsets against rank 0 (min-RTT ping-pong over the control
  communicator);
* :mod:`.capture`: traced iterations after validation, outside the timed loop (the harness's
  :class:`~.capture.Tracer`);
* :mod:`.document`: the trace file (Chrome trace / Perfetto JSON plus collbench's own record);
* :mod:`.schema`: checks a file is valid Chrome-trace JSON;
* :mod:`.steps`: per-step statistics (``collbench trace show``);
* :mod:`.compare`: measured vs modelled per step (``collbench trace compare``);
* :mod:`.timeline`: the static figure (``collbench plot --kind timeline``);
* :mod:`.nvtx`: NVTX ranges for GPU profilers (nothing when no profiler is attached).
"""
