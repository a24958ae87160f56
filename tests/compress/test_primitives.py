"""The building blocks of the compressed algorithms, in one process: deterministic top-k,
sparse merging and packing, block quantization, and the numpy references on small cases
worked out by hand."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from collbench.compress import reference, sparse
from collbench.compress.quantize import packed_bytes, roundtrip
from collbench.compress.runners.gtopk import binomial_children, binomial_parent
from collbench.compress.runners.shards import shard_bounds
from collbench.compress.runners.topk_rd import FoldPlan


def test_top_k_breaks_ties_by_lower_index() -> None:
    x = np.array([1, -3, 3, 0, 2, -3, 3], dtype=np.float32)
    assert sparse.top_k(x, 1).tolist() == [1]          # |-3| at 1, 2, 5, 6: the lowest wins
    assert sparse.top_k(x, 3).tolist() == [1, 2, 5]
    assert sparse.top_k(x, 5).tolist() == [1, 2, 4, 5, 6]
    assert sparse.top_k(x, 7).tolist() == list(range(7))
    assert sparse.top_k(x, 0).tolist() == []


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_top_k_matches_a_full_sort(dtype) -> None:
    rng = np.random.default_rng(3)
    x = (rng.integers(-20, 21, 5000) / 8).astype(dtype)   # many ties
    for k in (1, 17, 999, 4999):
        assert sparse.top_k(x, k).tolist() == reference.selected(x, k).tolist()


def test_merge_and_pack_round_trip() -> None:
    ia, va = np.array([1, 4, 9], np.int32), np.array([1.0, 2.0, 3.0], np.float32)
    ib, vb = np.array([0, 4, 10], np.int32), np.array([5.0, -2.0, 1.0], np.float32)
    idx, val = sparse.merge(ia, va, ib, vb)
    assert idx.tolist() == [0, 1, 4, 9, 10] and val.tolist() == [5.0, 1.0, 0.0, 3.0, 1.0]
    buf = np.empty(100, np.uint8)
    used = sparse.pack(idx, val, np.dtype(np.float32), buf)
    assert used == 5 * 8
    back = sparse.unpack(buf, used, np.dtype(np.float32))
    assert back[0].tolist() == idx.tolist() and back[1].tolist() == val.tolist()


def test_topk_sum_by_hand() -> None:
    a = np.array([5, 1, -4, 0], np.float32)
    b = np.array([0, -6, 4, 1], np.float32)
    assert reference.topk_sum([a, b], 2).tolist() == [5, -6, 0, 0]   # a keeps 0,2; b keeps 1,2


def test_gtopk_by_hand() -> None:
    # 3 ranks, k = 1: rank 0 merges rank 1 (1 -> 0), then rank 2 (2 -> 0)
    x = [np.array([3, 0, 0, 0], np.float32), np.array([0, 4, 0, 0], np.float32),
         np.array([-3.5, 0, 0, 0], np.float32)]
    sels = [(reference.selected(v, 1), v[reference.selected(v, 1)]) for v in x]
    # round 1: {0: 3} + {1: 4} -> keep {1: 4}; round 2: {1: 4} + {0: -3.5} -> keep {1: 4}
    assert reference.gtopk(sels, 4, 1, np.dtype(np.float32)).tolist() == [0, 4, 0, 0]
    # the exact top-1 of the sum would be element 1 as well, but element 0's -0.5 is lost
    assert binomial_children(0, 3) == [1, 2] and binomial_parent(2) == 0


def test_tree_and_fold_shapes() -> None:
    for p in range(1, 20):
        parents = [binomial_parent(r) for r in range(p)]
        assert parents[0] is None
        assert sorted(c for r in range(p) for c in binomial_children(r, p)) == list(range(1, p))
        plans = [FoldPlan.of(r, p) for r in range(p)]
        pof2 = plans[0].pof2
        rem = p - pof2
        assert pof2 <= p < 2 * pof2
        # the first 2*rem ranks pair up: the even one sits out, the odd one folds it in
        assert [r for r in range(p) if plans[r].sits_out] == list(range(0, 2 * rem, 2))
        assert all(plans[r].folded_in == r - 1 for r in range(1, 2 * rem, 2))
        active = [r for r in range(p) if not plans[r].sits_out]
        assert len(active) == pof2
        for r in active:  # every step pairs two active ranks with each other
            assert len(plans[r].partners) == pof2.bit_length() - 1
            for step, peer in enumerate(plans[r].partners):
                assert not plans[peer].sits_out and plans[peer].partners[step] == r


def test_shards_are_whole_blocks() -> None:
    for count, block, p in ((1000, 16, 3), (7, 16, 4), (4099, 256, 8), (5, 1, 8)):
        bounds = shard_bounds(count, block, p)
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(a == pb for (_, pb), (a, _) in zip(bounds, bounds[1:]))
        assert all(a % block == 0 for a, _ in bounds if a < count)


def test_quantized_sizes() -> None:
    assert packed_bytes(1000, 256) == 4 * 4 + 1000
    assert roundtrip(np.zeros(5, np.float32), 4, "int8").tolist() == [0.0] * 5
