"""The α-β-γ cost model of collbench's algorithms.

* :mod:`.cost` -- the model: what a step of a rank costs, steps summed (bulk synchronous);
* :mod:`.walk` -- cost by walking a real schedule (the reference);
* :mod:`.closed` and :mod:`.hierarchical` -- closed forms for every algorithm of the suite;
* :mod:`.profile` -- machine profiles (shipped: perlmutter, delta, generic; calibrated: yours);
* :mod:`.predict` -- predictions for a collective over algorithms, sizes and node counts.
"""

from .cost import Cost, Link, Machine
from .profile import Profile, load_profile

__all__ = ["Cost", "Link", "Machine", "Profile", "load_profile"]
