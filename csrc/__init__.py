"""Kernel and C sources (data only); located at run time with importlib.resources."""
