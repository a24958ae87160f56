"""Which GPU each rank uses, and the facts about it that go into the results metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UsageError


def parse_gpu_map(text: str | None) -> tuple[int, ...] | None:
    """``--gpu-map 3,2,1,0``: device index (among visible devices) for local rank 0, 1, …."""
    if not text:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--gpu-map {text!r}: expected comma-separated device indices, e.g. 3,2,1,0") from None
    if any(v < 0 for v in values):
        raise UsageError("--gpu-map indices must be non-negative")
    return values


def choose_device(local_rank: int, visible: int, gpu_map: tuple[int, ...] | None) -> int:
    """Device index for this local rank. Without a map, local rank r uses device r mod visible
    (several ranks share a GPU only when there are more ranks than GPUs)."""
    if visible < 1:
        raise UsageError("no CUDA device is visible to this rank (check CUDA_VISIBLE_DEVICES "
                         "and the job's GPU allocation)")
    if gpu_map is not None:
        if local_rank >= len(gpu_map):
            raise UsageError(f"--gpu-map lists {len(gpu_map)} devices but this node runs local rank {local_rank}")
        device = gpu_map[local_rank]
    else:
        device = local_rank % visible
    if device >= visible:
        raise UsageError(f"device {device} requested for local rank {local_rank}, but only {visible} "
                         f"are visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return device


def device_facts(device: int) -> dict[str, Any]:
    """Name, UUID, PCI id and memory of a device (CuPy runtime API)."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(device)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    uuid = props.get("uuid", b"")
    uuid_text = ("GPU-" + bytes(uuid).hex()) if uuid else None
    pci = f"{props.get('pciDomainID', 0):04x}:{props.get('pciBusID', 0):02x}:{props.get('pciDeviceID', 0):02x}"
    return {"index": device, "name": name, "uuid": uuid_text, "pci": pci,
            "memory_bytes": int(props.get("totalGlobalMem", 0)),
            "compute_capability": f"{props.get('major', 0)}.{props.get('minor', 0)}"}


def runtime_facts() -> dict[str, Any]:
    import cupy

    runtime = cupy.cuda.runtime

    def dotted(code: int) -> str:
        return f"{code // 1000}.{code % 1000 // 10}"

    return {"driver_version": dotted(runtime.driverGetVersion()),
            "runtime_version": dotted(runtime.runtimeGetVersion()),
            "cupy_version": cupy.__version__,
            "visible_devices": runtime.getDeviceCount(),
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


def node_name_for_map() -> str:
    """This rank's node name (recorded with each device in the metadata)."""
    from ..run.topology import node_name

    return node_name()


def device_identity(device: int) -> str:
    """What tells physical GPUs apart across ranks: the UUID, else host and PCI bus id.

    The device index does not: under per-task binding (``srun --gpus-per-task=1``,
    ``--gpu-bind=map_gpu``, a per-rank CUDA_VISIBLE_DEVICES) every rank sees its own GPU as
    device 0. UUIDs are unique across hosts; a PCI bus id only within one host.
    """
    facts = device_facts(device)
    uuid = facts["uuid"]
    if uuid and set(uuid.removeprefix("GPU-")) != {"0"}:  # an all-zero UUID identifies nothing
        return uuid
    return f"{node_name_for_map()}/pci:{facts['pci']}"


def shared_devices(identities: list[str]) -> list[list[int]]:
    """Groups of ranks (by index into ``identities``) that would run on one physical GPU."""
    groups: dict[str, list[int]] = {}
    for rank, identity in enumerate(identities):
        groups.setdefault(identity, []).append(rank)
    return [ranks for ranks in groups.values() if len(ranks) > 1]


def host_view(host: Any) -> Any:
    """A device buffer copied to the host, viewed with collbench's dtype: device buffers of
    bfloat16 are uint16 (CuPy has no bfloat16), and no collbench dtype is uint16."""
    import ml_dtypes
    import numpy as np

    return host.view(ml_dtypes.bfloat16) if host.dtype == np.uint16 else host


def copy_to_device(view: Any, data: Any, stream: Any) -> None:
    """Host array -> device view (bfloat16 travels as its uint16 bits), completed on return."""
    import numpy as np

    view.set(np.ascontiguousarray(data).view(view.dtype), stream=stream)
    stream.synchronize()


def copy_to_host(view: Any, stream: Any) -> Any:
    """Device view -> host array with collbench's dtype, completed on return."""
    host = view.get(stream=stream)
    stream.synchronize()
    return host_view(host)


def loaded_library(pattern: str) -> str | None:
    """Path of the first shared library mapped into this process whose file name matches the
    regular expression ``pattern`` (Linux /proc/self/maps), or None."""
    import re

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) >= 6 and re.search(pattern, os.path.basename(fields[-1])):
            return fields[-1]
    return None
