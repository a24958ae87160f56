"""csrc/interp.cu on the CPU, for the fake CuPy: the launch runs this rank's device program with the
reference interpreter's RankMachine (collbench/gpu/interp_reference.py) on the fake device memory.

Everything the kernel reads comes from the launch's arguments, as on a GPU: the IpcCommunicator's
descriptor (every rank's buffer addresses in this process), the uploaded program (header and
instructions, decoded from its bytes), the timeout. Waits spin on the signal words, which other
ranks (processes, through the fake IPC mappings) write; a wait that outlasts the timeout writes the
interpreter's error record into this rank's signal buffer, as the kernel does, and the launch
returns.

Knobs: FAKECUDA_INTERP_SKIP_RANK=r (rank r's launches do nothing: a rank that never arrives),
FAKECUDA_INTERP_TIMEOUT_S=s (the wait timeout instead of the launch's), FAKECUDA_INTERP_CORRUPT=1
(one wrong byte per launch: a broken kernel).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _bytes_at

# collbench is imported at the first launch, not with the fake: `import cupy` must not import it.
if TYPE_CHECKING:
    from collbench.gpu.interp_reference import RankMachine

#: (kernel name, grid) of every launch, for tests
LAUNCHES: list[tuple[str, int]] = []


def _record(sig: np.ndarray, code: int, peer: int, instr: int, expected: int, seen: int, rank: int,
            waited_s: float, what: int) -> None:
    from collbench.gpu.interp_program import constants
    from collbench.gpu.kernel_sources import header_constants

    h = header_constants()
    err = h["SIG_ERROR_WORD"]
    if sig[err]:
        return  # first error wins
    sig[err + 1:err + 11] = [constants()["KID"], 0, peer, instr, expected, seen, rank,
                             min(int(waited_s * 1e6), 0xFFFFFFFF), 1, what]
    sig[err] = code


def _corrupt_after_first_write(machine: RankMachine) -> None:
    """Flip a bit of the first element the first data instruction writes, after it ran."""
    from collbench.gpu.interp_program import constants

    step, c = machine.step, constants()
    data = (c["OP_COPY"], c["OP_REDUCE"])

    def corrupting_step() -> str:
        pc = machine.pc
        state = step()
        if state == "ran" and pc < len(machine.prog.instrs) and int(machine.prog.instrs[pc]["op"]) in data \
                and not getattr(machine, "corrupted", False):
            ins = machine.prog.instrs[pc]
            dst = machine.view(machine.rank, int(ins["dmem"]), int(ins["doff"]), int(ins["len"]))
            dst.view(np.uint8)[0] ^= 0x10
            machine.corrupted = True  # type: ignore[attr-defined]
        return state

    machine.step = corrupting_step  # type: ignore[method-assign]


def launch(name: str, grid: int, args: tuple[Any, ...]) -> None:
    """interp_<op>_<dtype>(const CommDesc* d, const unsigned char* program, u64 timeout_ns)."""
    import ml_dtypes

    from collbench.gpu.interp_program import INSTR_DTYPE, DeviceProgram, constants
    from collbench.gpu.interp_reference import RankMachine
    from collbench.gpu.kernel_sources import dtype_info, header_constants

    LAUNCHES.append((name, grid))
    desc_ptr, prog_ptr, timeout_ns = (int(a) for a in args)
    _, op, dtype = name.split("_", 2)
    info = dtype_info(dtype)
    arith = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else info.storage
    h, c = header_constants(), constants()
    m = h["MAX_RANKS"]
    desc = _bytes_at(desc_ptr, h["DESC_BYTES"])
    pointers = desc[:32 * m].view(np.uint64).reshape(4, m)  # in, out, scratch, sig
    rank, nranks = (int(x) for x in desc[32 * m:32 * m + 8].view(np.int32))
    sigs = [_bytes_at(int(pointers[3, r]), h["SIG_BYTES"]).view(np.uint32) for r in range(nranks)]
    own = sigs[rank]
    if own[h["SIG_ERROR_WORD"]]:
        return  # a recorded error: every later launch returns at once
    if os.environ.get("FAKECUDA_INTERP_SKIP_RANK") == str(rank):
        return  # a rank that never launches the operation (its peers must time out, not hang)
    header = _bytes_at(prog_ptr, c["HEADER_BYTES"]).view(np.uint32)
    ninstr, itemsize = int(header[4]), int(header[5])
    capacity = int(header[6:8].view(np.uint64)[0])
    if (int(header[0]) != c["MAGIC"] or int(header[1]) != c["VERSION"] or int(header[2]) != rank
            or int(header[3]) != nranks or itemsize != info.itemsize):
        _record(own, h["ERR_BAD_LAUNCH"], 0, 0, 0, 0, rank, 0.0, 0)
        return
    instrs = _bytes_at(prog_ptr + c["HEADER_BYTES"], ninstr * c["INSTR_BYTES"]).view(INSTR_DTYPE)
    totals = header[16:16 + 4 * m].reshape(4, m)[:, :nranks].copy()
    n = capacity // itemsize
    program = DeviceProgram(rank, nranks, instrs, 0, (n, n, n), totals)
    arrays: dict[tuple[int, int], np.ndarray] = {}

    def memory(r: int, mem: int) -> np.ndarray:
        if (r, mem) not in arrays:
            arrays[(r, mem)] = _bytes_at(int(pointers[mem, r]), n * itemsize).view(arith)
        return arrays[(r, mem)]

    machine = RankMachine(program, memory, sigs, op)
    if os.environ.get("FAKECUDA_INTERP_CORRUPT") == "1":  # a broken kernel: one wrong byte per launch
        _corrupt_after_first_write(machine)
    timeout = float(os.environ.get("FAKECUDA_INTERP_TIMEOUT_S", timeout_ns / 1e9))
    since = None
    while True:
        state = machine.step()
        if state == "done":
            return
        if state == "ran":
            since = None
            continue
        now = time.monotonic()
        since = since if since is not None else now
        if now - since > timeout:
            kind, peer, expected, seen = machine.waiting or ("ready", 0, 0, 0)
            what = c["OP_WAIT_READY"] if kind == "ready" else c["OP_WAIT_DONE"]
            _record(own, h["ERR_TIMEOUT"], peer, machine.pc, expected, seen, rank, now - since, what)
            return
        time.sleep(0.0002)
