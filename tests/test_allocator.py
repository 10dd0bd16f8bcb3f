"""The allocator setting gives the memory of freed large buffers back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from xrouter import allocator

# Frees a large block (glibc then raises its mmap threshold), allocates 200 MiB of 1 MiB
# buffers between small live ones (a fragmented heap), frees the large ones and prints the
# resident size before, at the peak and after, in MiB.
PROBE = """
import sys
from xrouter.allocator import tune_allocator

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "tuned":
    assert tune_allocator()
first = bytearray(8 * 2**20)
del first
before = resident_mib()
small, large = [], []
for _ in range(200):
    large.append(bytearray(2**20))
    small.append(bytearray(1000))
peak = resident_mib()
del large
print(before, peak, resident_mib())
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")


def _resident_after(mode: str) -> tuple[float, float, float]:
    output = subprocess.run(
        [sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    before, peak, after = (float(value) for value in output.split())
    return before, peak, after


@glibc_only
def test_freed_large_buffers_leave_the_process() -> None:
    before, peak, after = _resident_after("tuned")
    assert peak - before > 150
    assert after - before < 20


@glibc_only
def test_without_it_a_fragmented_heap_keeps_them() -> None:
    before, peak, after = _resident_after("plain")
    assert peak - before > 150
    assert after - before > 150


@glibc_only
def test_tune_allocator_reports_success() -> None:
    assert allocator.tune_allocator()
