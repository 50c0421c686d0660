"""Peak memory on the CPU: a new peak starts from what is alive, not from what an earlier step
freed and the allocator kept."""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# 1000 tensors of 400 KB, freed in allocation order: glibc keeps the pages (measured: the
# resident set stays ~380 MiB up until malloc_trim hands them back)
PROBE = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from lib.run import machine
cpu = torch.device("cpu")
held = [torch.randn(100, 1000) for _ in range(1000)]
del held
before = machine.current_memory_bytes(cpu)
machine.reset_peak_memory(cpu)
print(before, machine.current_memory_bytes(cpu), machine.peak_memory_bytes(cpu))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak RSS only")
def test_reset_peak_memory_hands_back_freed_heap_pages():
    out = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], capture_output=True,
                         text=True, check=True).stdout.split()
    before, after, peak = (int(v) for v in out)
    freed = 1000 * 100 * 1000 * 4
    assert after < before - freed // 2  # most of the freed 400 MB left the resident set
    assert peak < before - freed // 2  # and the new peak starts below what was held


# a 16 MiB block freed raises glibc's mmap threshold to 16 MiB; four 2 MiB tensors then come
# from the heap, unless map_large_allocations put the threshold back at 1 MiB. mallinfo2's
# hblkhd is the bytes held in mappings.
MAPPED_PROBE = """
import ctypes, sys, torch
sys.path.insert(0, sys.argv[1])
from lib.run import machine
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                              "usmblks", "fsmblks", "uordblks", "fordblks",
                                              "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
big = torch.empty(16 << 20, dtype=torch.uint8)
del big
if sys.argv[2] == "tuned":
    machine.map_large_allocations()
held = [torch.empty(2 << 20, dtype=torch.uint8) for _ in range(4)]
print(libc.mallinfo2().hblkhd)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc 2.33+ only")
def test_map_large_allocations_maps_megabyte_tensors_again():
    mapped = {}
    for mode in ("plain", "tuned"):
        done = subprocess.run([sys.executable, "-c", MAPPED_PROBE, str(ROOT), mode],
                              capture_output=True, text=True, check=True)
        mapped[mode] = int(done.stdout)
    assert mapped["tuned"] - mapped["plain"] >= 4 * (2 << 20)
