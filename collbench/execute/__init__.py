"""Executing schedules: binding a rank's program to buffers (:mod:`.bind`), the algorithm names
and programs the harness asks for (:mod:`.programs`), and the executors that run a bound program
(:mod:`.python_mpi` over mpi4py, :mod:`.c_executor` in collbench's C loops)."""
