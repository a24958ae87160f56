"""The α-β-γ cost model of collbench's algorithms.

* :mod:`.cost` -- the model: what a step of a rank costs, steps summed (bulk synchronous);
* :mod:`.walk` -- cost by walking a real schedule (the reference);
* :mod:`.forms` -- the closed-form cost of an algorithm, looked up by (algorithm, collective):
  :mod:`.costs` (one module per family, each registering its forms; :mod:`.topo` vectorizes
  a step over ranks) or a cost registered beside the generator, priced by :mod:`.traffic`;
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
