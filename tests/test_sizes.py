import pytest

from collbench.errors import UsageError
from collbench.sizes import format_bytes, parse_size, size_sweep


@pytest.mark.parametrize("text, expected", [
    ("8", 8), ("0", 0), ("64K", 65536), ("64k", 65536), ("16M", 16 << 20), ("1G", 1 << 30),
    ("2GiB", 2 << 30), ("3 MiB", 3 << 20), ("12B", 12), ("1T", 1 << 40),
])
def test_parse_size_uses_binary_suffixes_like_nccl_tests(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-5", "1.5M", "12X", "M"])
def test_parse_size_rejects_garbage(text):
    with pytest.raises(UsageError, match="cannot parse"):
        parse_size(text)


def test_factor_sweep_includes_both_ends():
    assert size_sweep(8, 128, 2, None) == [8, 16, 32, 64, 128]
    assert size_sweep(8, 100, 4, None) == [8, 32]


def test_additive_sweep_like_nccl_tests_stepbytes():
    assert size_sweep(1 << 20, 4 << 20, None, 1 << 20) == [1 << 20, 2 << 20, 3 << 20, 4 << 20]
    assert size_sweep(100, 100, 1, None) == [100]


def test_sweep_from_zero_continues_at_one():
    assert size_sweep(0, 4, 2, None) == [0, 1, 2, 4]


def test_min_above_max_is_a_usage_error():
    with pytest.raises(UsageError, match="larger than maxbytes"):
        size_sweep(64, 8, 2, None)


def test_format_bytes():
    assert format_bytes(8) == "8 B"
    assert format_bytes(65536) == "64 KiB"
    assert format_bytes(3 << 20) == "3 MiB"
    assert format_bytes(1000) == "1000 B"
