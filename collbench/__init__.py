"""collbench: benchmark and compare collective-communication algorithms."""

__version__ = "0.1.0"
