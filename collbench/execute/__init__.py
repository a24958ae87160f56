"""Executing schedules: one path from an algorithm's program to a timed run.

1. :mod:`.programs` - algorithm names, preconditions, a rank's program;
2. :mod:`.bind` - the single bind step: lowering (in-place aliasing resolved) and which buffer
   (send, receive, scratch) each of the program's buffers lives in, with the views the harness
   fills and reads; the same for numpy and CuPy buffers;
3. an executor that runs the bound program, each one a :class:`.runner.ScheduleRunner`:
   :mod:`.python_mpi` (mpi4py), :mod:`.c_executor` (collbench's C loops, "the C executor";
   built by :mod:`.c_build`, called through :mod:`.c_binding`), ``collbench.gpu.nccl_executor``;
4. :func:`.runner.prepared_op` - the runner as the harness's ``PreparedOp``.

Message tags live in :mod:`.tags`, the user-visible names in :mod:`.names`.

The C executor keeps the name users already have for it (``--executor native``, and the values
below in results files). ``--executor native`` asks for the C executor (an error where it cannot
be built), ``python`` for the Python executor, ``auto`` for the C executor where it builds. A row's
``executor`` says what ran:

==================  =========================================================================
value in results    what ran
==================  =========================================================================
``library``         the library's collective (``native`` algorithm), timed in Python
``library+native``  the library's collective, called and timed by the C executor
``python``          a schedule, run by the Python MPI executor (:mod:`.python_mpi`)
``native``          a schedule, run by the C executor (:mod:`.c_executor`)
``nccl-p2p``        a schedule, run over grouped NCCL send/recv (``gpu/nccl_executor``)
``staged-host``     mpi on device buffers, copied through host memory (``backends/mpi_cuda``)
``cuda-ipc``        collbench's CUDA kernels (``backends/cuda``)
``cuda-interp``     a schedule, run by collbench's interpreter kernel (``gpu/interp``, ``csrc/interp.cu``)
==================  =========================================================================
"""
