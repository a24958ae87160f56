"""Training workloads: a model's training step as the collectives it runs (``collbench workload``).

Modules, one job each:

* ``model`` -- models as parameter shapes (collbench model files), ``library`` -- where they come
  from, ``hf`` -- derived from a Hugging Face config.json;
* ``plan`` -- parallelism plans and the impossible ones, ``grid`` -- ranks to process groups and
  nodes, ``shard`` -- what one rank holds, ``memory`` -- does it fit;
* ``buckets`` -- DDP's gradient buckets, ``step`` -- every collective of one step;
* ``cost`` -- the α-β-γ model on each collective, ``compute`` -- compute estimate and overlap,
  ``predict`` -- plans × node counts, ``report``/``plot`` -- tables and figures;
* ``execute`` -- ``run`` inside the MPI job, ``check`` -- a run against its prediction;
* ``cli`` -- the ``collbench workload`` command.

See docs/workloads.md.
"""
