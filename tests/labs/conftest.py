"""Fixtures of the lab tests. The local Slurm cluster is tests/slurm's own session fixture
(scripts/slurm/local-cluster.sh up/down), re-exported here rather than written again."""

from slurm.conftest import slurm_cluster  # noqa: F401  (the fixture, for test_lab4_local_slurm)
