"""Error types that reach the user as one clear line (see cli.py)."""


class UsageError(Exception):
    """The user asked for something invalid; reported as one line, exit status 2."""


class UnsupportedError(UsageError):
    """A valid request this install or backend cannot honour (e.g. bfloat16 sum in this MPI)."""
