"""Slurm sweeps: cluster profiles (:mod:`.profiles`), script rendering (:mod:`.render`), the
``collbench slurm`` command (:mod:`.cli`) and the helpers a sweep runs inside its job
(:mod:`.injob`, ``python -m collbench.slurm``)."""
