"""``powersgd``: PowerSGD's rank-r approximation (Vogels et al., NeurIPS 2019, Algorithm 1).

The vector is viewed as an m×n matrix M_i (the ``shape`` option, else the nearest square with
the last row zero-padded). With Q an n×r matrix every rank draws from the same seed:

    P = allreduce(M_i Q)           m·r values
    P̂ = orthonormal basis of P     (QR)
    Q' = allreduce(M_iᵀ P̂)          n·r values
    result = P̂ Q'ᵀ                 = P̂ P̂ᵀ Σ M_i, the sum projected onto span(P̂)

so two MPI_Allreduce calls of (m + n)·r float32 values replace one of m·n. Arithmetic is float32
(float64 for float64 data). Q is drawn afresh from the same seed on every call, and there is no
error feedback: warm-starting Q from the previous step and feeding the residual back are
training-loop concerns (the paper's Algorithm 2), outside a communication benchmark.

Bytes sent per rank: a ring allreduce's 2·(p - 1)/p of each message.

The products go through numpy's BLAS. A multi-threaded BLAS in every MPI rank oversubscribes
the cores (4 ranks × 2 OpenBLAS threads on this 2-core machine made a 512×512 product 60×
slower), so while a runner exists its process's BLAS is held to one thread when
``threadpoolctl`` is installed (the row's ``compress`` record says ``blas_threads``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...dtypes import DType
from ..options import Options
from .base import CompressedRunner

Q_SEED = 20190523  # the same Q on every rank (and in the reference)


def initial_q(n: int, rank: int, dtype: np.dtype) -> np.ndarray:
    return np.random.default_rng(Q_SEED).standard_normal((n, rank)).astype(dtype)


def orthonormal(p: np.ndarray) -> np.ndarray:
    """An orthonormal basis of P's columns (Householder QR; column signs do not matter: the
    result only uses P̂ P̂ᵀ)."""
    return np.linalg.qr(p, mode="reduced")[0]


def _one_blas_thread() -> Any:
    """A threadpoolctl limit of one BLAS thread (undo with ``.restore_original_limits()``), or None."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


class PowerSGD(CompressedRunner):
    name = "powersgd"

    def __init__(self, comm: Any, input: np.ndarray, output: np.ndarray, dtype: DType,
                 options: Options) -> None:
        super().__init__(comm, input, output, dtype, options)
        self.compute = np.dtype(np.float64) if dtype.name == "float64" else np.dtype(np.float32)
        self.m, self.n = options.matrix(self.count)
        self.r = options.rank_for(self.count)
        self.matrix = np.zeros(self.m * self.n, dtype=self.compute)
        self.q0 = initial_q(self.n, self.r, self.compute)
        self.p_buf = np.empty((self.m, self.r), dtype=self.compute)
        self.q_buf = np.empty((self.n, self.r), dtype=self.compute)
        p = self.size
        itemsize = self.compute.itemsize
        self._message_bytes = (self.m + self.n) * self.r * itemsize
        self._sent = 2 * (p - 1) * self._message_bytes // p if p > 1 else 0
        self._blas = _one_blas_thread()
        self.details = {"blas_threads": 1 if self._blas is not None else "library default"}

    def free(self) -> None:
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None

    def run(self) -> None:
        if self.count == 0:
            return
        MPI = self.MPI
        self.matrix[:self.count] = self.input
        m = self.matrix.reshape(self.m, self.n)
        np.matmul(m, self.q0, out=self.p_buf)
        self.comm.Allreduce(MPI.IN_PLACE, self.p_buf, op=MPI.SUM)
        basis = orthonormal(self.p_buf)
        np.matmul(m.T, basis, out=self.q_buf)
        self.comm.Allreduce(MPI.IN_PLACE, self.q_buf, op=MPI.SUM)
        result = basis @ self.q_buf.T
        self.output[...] = result.reshape(-1)[:self.count]
        self.sent_bytes = self._sent
