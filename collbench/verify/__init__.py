"""``collbench verify``: the registry-wide symbolic sweep, spread over a process pool."""
