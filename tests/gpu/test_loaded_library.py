"""The metadata names the libraries the process really mapped (libnccl, its network plugin)."""

from collbench.gpu.device import loaded_library


def test_finds_a_mapped_library_and_not_an_absent_one():
    libc = loaded_library(r"^libc[.-]")
    assert libc is not None and "libc" in libc
    assert loaded_library(r"^libnccl-net-no-such-plugin\.so") is None
