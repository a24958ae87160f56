"""The segment memory of the verifier against an element-by-element model."""

from __future__ import annotations

import random

import pytest

from collbench.algorithms._symbolic import Memory, combine, format_ranks


def _expand(pieces) -> list:
    out = []
    for length, idx, mask in pieces:
        assert length > 0
        out += [((idx + e) if mask else None, mask) for e in range(length)]
    return out


def _check_invariants(m: Memory) -> None:
    assert m.starts[0] == 0 and m.starts[-1] < m.size
    assert all(a < b for a, b in zip(m.starts, m.starts[1:]))
    for k in range(1, len(m.starts)):  # maximal runs: no neighbour continues the previous one
        same = m.masks[k] == m.masks[k - 1]
        assert not (same and (m.masks[k] == 0 or
                              m.idxs[k] == m.idxs[k - 1] + m.starts[k] - m.starts[k - 1]))


@pytest.mark.parametrize("seed", range(6))
def test_random_writes_match_an_element_model(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        n = rng.randint(1, 40)
        m = Memory(n, 5, 3) if rng.random() < 0.5 else Memory(n)
        model = _expand([(n, m.idxs[0], m.masks[0])])
        for _ in range(20):
            start = rng.randrange(n)
            length = rng.randint(1, n - start)
            pieces, left = [], length
            while left:
                k = rng.randint(1, min(left, 5))
                pieces.append((k, rng.randint(0, 6), rng.choice([0, 1, 2, 3])))
                left -= k
            m.write(start, pieces)
            model[start:start + length] = _expand(pieces)
            _check_invariants(m)
            assert _expand(m.read(0, n)) == model
            a = rng.randrange(n)
            b = rng.randint(a + 1, n)
            assert _expand(m.read(a, b - a)) == model[a:b]


def test_combine_reports_problems_by_position() -> None:
    out, problems = combine([(4, 0, 1)], [(2, 0, 2), (2, 2, 1)])
    assert out == [(2, 0, 3), (2, 2, 1)]
    assert problems == [(2, 2, "duplicate {0}")]
    _, problems = combine([(3, 0, 1)], [(3, 5, 2)])
    assert problems == [(0, 3, "mixes source elements 0.. and 5..")]
    _, problems = combine([(3, 0, 0)], [(3, 0, 2)])
    assert problems == [(0, 3, "undefined")]


def test_format_ranks() -> None:
    assert format_ranks(0b1011_1101) == "{0,2-5,7}"
    assert format_ranks(1 << 999) == "{999}"
    assert format_ranks((1 << 64) - 1) == "{0-63}"
