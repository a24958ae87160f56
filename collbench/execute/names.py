"""The names users see for executors; their meaning is the table in :mod:`collbench.execute`.

These strings are in users' results files and scripts already, so they never change, even where
the code now says "the C executor" for what the strings call ``native``.
"""

from __future__ import annotations

#: ``--executor`` values of ``collbench run`` (the mpi backend on host buffers)
EXECUTOR_CHOICES = ("auto", "native", "python")

# a row's ``executor``: what produced its timings
ROW_LIBRARY = "library"              # the library's collective, called and timed in Python
ROW_LIBRARY_C = "library+native"     # the library's collective, called and timed by the C executor
ROW_PYTHON = "python"                # a schedule run by the Python MPI executor
ROW_C = "native"                     # a schedule run by the C executor
ROW_NCCL_P2P = "nccl-p2p"            # a schedule run over grouped NCCL send/recv
ROW_CUDA_INTERP = "cuda-interp"      # a schedule run by the CUDA interpreter kernel (gpu/interp.py)
