"""Up-front resource checks: a clear error instead of an out-of-memory kill mid-sweep."""

from __future__ import annotations

from pathlib import Path

from ..sizes import format_bytes


def available_memory() -> int | None:
    """MemAvailable of this node in bytes (Linux), or None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host_bytes_per_rank(max_bytes: int, check: bool) -> int:
    """Send + receive buffers, plus the pattern, expected and read-back copies of a check."""
    return max_bytes * (5 if check else 2)


def memory_problem(max_bytes: int, check: bool, ranks_on_node: int) -> str | None:
    """A one-line explanation when the sweep's largest size cannot fit in this node's memory."""
    available = available_memory()
    need = host_bytes_per_rank(max_bytes, check) * ranks_on_node
    if available is None or need <= available * 0.9:
        return None
    return (f"maxbytes {format_bytes(max_bytes)} needs about {need / 2**30:.1f} GiB on this node "
            f"({ranks_on_node} ranks × {'5' if check else '2'} buffers) but only "
            f"{available / 2**30:.1f} GiB is available; lower -e/--maxbytes"
            + (" or turn validation off with -c 0" if check else ""))
