"""Peak memory on the CPU: a new peak starts from what is alive, not from what an earlier step
freed and the allocator kept."""
from __future__ import annotations

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
