"""``collbench import``: nccl-tests and OSU logs as collbench results files.

:mod:`.nccl_tests` and :mod:`.osu` read the logs, :mod:`.common` holds what they share (line
cleaning, records, writing), :mod:`.cli` the command (``add_parser``/``main``).
"""
