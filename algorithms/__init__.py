"""Collective algorithms as schedules (installed as ``collbench.algorithms``).

Pure Python + numpy: no MPI, no CUDA, no I/O. The pieces:

* :mod:`.schedule` - the IR (problems, programs of steps of sends/receives/local ops);
* :mod:`.registry` - named algorithms, their preconditions and program generators;
* :mod:`.reduction` - the reduction operators shared by the simulator and the executors;
* :mod:`.verify` - the symbolic verifier and the registry-wide sweep;
* :mod:`.simulate` - the single-process numpy simulator (test oracle) and reference results.
"""

from .reduction import OPS, finalize_avg, is_commutative, reduce_into, ufunc
from .registry import (
                       NATIVE,
                       Algorithm,
                       Implementation,
                       algorithms,
                       algorithms_for,
                       get_algorithm,
                       known_names,
                       register,
                       unregister,
)
from .schedule import (
                       Buf,
                       Collective,
                       Copy,
                       Layout,
                       Problem,
                       Program,
                       Recv,
                       Reduce,
                       Schedule,
                       Send,
                       Slice,
                       Step,
                       inplace_input_offset,
                       resolve_slice,
)

# The functions verify() and simulate() are not re-exported here: they share their modules'
# names, and binding them on the package would hide the submodules (import them from
# collbench.algorithms.verify / .simulate).
from .simulate import reference_result
from .verify import (
                       AlgorithmReport,
                       VerifyFailure,
                       VerifyReport,
                       default_counts,
                       format_verify_report,
                       verify_algorithm,
                       verify_all,
                       verify_both,
)

__all__ = [
    # schedule IR
    "Buf", "Collective", "Copy", "Layout", "Problem", "Program", "Recv", "Reduce", "Schedule",
    "Send", "Slice", "Step", "inplace_input_offset", "resolve_slice",
    # reductions
    "OPS", "finalize_avg", "is_commutative", "reduce_into", "ufunc",
    # registry
    "NATIVE", "Algorithm", "Implementation", "algorithms", "algorithms_for", "get_algorithm",
    "known_names", "register", "unregister",
    # verification and simulation
    "AlgorithmReport", "VerifyFailure", "VerifyReport", "default_counts",
    "format_verify_report", "verify_algorithm", "verify_all", "verify_both",
    "reference_result",
]
