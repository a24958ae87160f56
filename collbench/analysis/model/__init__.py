"""The α-β-γ cost model of collbench's algorithms.

* :mod:`.cost` -- the model: what a step of a rank costs, steps summed (bulk synchronous);
* :mod:`.walk` -- cost by walking a real schedule (the reference);
* :mod:`.closed` and :mod:`.hierarchical` -- closed forms for every algorithm of the suite;
* :mod:`.profile` -- machine profiles (shipped: perlmutter, delta, abci-a, oci-bm-gpu4.8,
  dgx-a100, a100-pcie, generic; calibrated: yours), with topology classes (NVSwitch, NVLink3
  all-to-all, PCIe; NIC rails, shared or several per GPU);
* :mod:`.nccl` -- NCCL's own collective (``native`` on the nccl backend), chosen and costed the
  way NCCL's tuning model does;
* :mod:`.fit` -- ``collbench calibrate --from LOGS``: profiles fitted on imported logs;
* :mod:`.predict` -- predictions for a collective over algorithms (and their variants), sizes
  and node counts.
"""

from .cost import Cost, Link, Machine
from .profile import Profile, load_profile

__all__ = ["Cost", "Link", "Machine", "Profile", "load_profile"]
