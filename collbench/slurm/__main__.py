"""``python -m collbench.slurm preflight|nccl-verdict``: helpers the sweep calls inside the job."""

import sys

from .injob import _helper_main

sys.exit(_helper_main(sys.argv[1:]))
