"""Compressed and sparse allreduce: top-k, quantized and low-rank, measured with their bytes
and their error (docs/compression.md).

* :mod:`.names`    -- algorithm names, options keys, ``all-compressed`` (no numpy: the CLI and
  the plan import it);
* :mod:`.options`  -- ``-O`` parsing and the one-line errors;
* :mod:`.sparse`, :mod:`.quantize` -- the primitives (deterministic top-k, merging, packing;
  int8/fp8 block quantization);
* :mod:`.runners`  -- one runner per algorithm, over mpi4py (the mpi backend prepares them
  through :mod:`.backend`);
* :mod:`.gpu_runners`, :mod:`.device` -- the nccl backend's runners on CuPy buffers, and the
  launches of csrc/compress.cu's kernels they use (same bits as the mpi runners);
* :mod:`.inputs`, :mod:`.bounds`, :mod:`.reference`, :mod:`.check` -- gradient-like inputs,
  the quantization error bound, numpy references, and the harness's validation hook.

The cost model is :mod:`collbench.analysis.model.compressed`.
"""
