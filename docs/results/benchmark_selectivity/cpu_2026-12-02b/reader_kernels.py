"""The histogram readers' two kernels before and after (2026-12-02): per-bin totals over all
channels and per-channel weighted sums, on random 16-bit tables of SmolLM2's shapes (576 and
1536 channels x 3904 bins), best of 20 calls, milliseconds. "After" is lib/loghist.py's own
kernels; "before" keeps the versions they replaced.

  python docs/results/benchmark_selectivity/cpu_2026-12-02b/reader_kernels.py"""
import sys
import time
from pathlib import Path

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from lib.loghist import _fused_bin_totals as totals_after  # noqa: E402
from lib.loghist import _fused_weighted_sums as wsum_after  # noqa: E402


@njit(parallel=True, nogil=True)
def totals_before(counts, out):  # threads own stripes of 256 bins across every row
    columns, nbins = counts.shape
    for stripe in prange((nbins + 255) // 256):
        b0 = stripe * 256
        b1 = min(b0 + 256, nbins)
        for j in range(columns):
            for b in range(b0, b1):
                out[b] += counts[j, b]


@njit(parallel=True, nogil=True)
def wsum_before(counts, weights, out):
    columns, nbins = counts.shape
    for j in prange(columns):
        acc = 0.0
        for b in range(nbins):
            acc += counts[j, b] * weights[b]
        out[j] = acc


def best_ms(fn, *args, zero=None):
    times = []
    for _ in range(20):
        if zero is not None:
            zero[:] = 0
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


rng = np.random.default_rng(0)
chunks = numba.get_num_threads()
for cols in (576, 1536):
    c = rng.integers(0, 30, size=(cols, 3904)).astype(np.uint16)
    w = rng.random(3904)
    t1, t2 = np.zeros(3904, np.int64), np.zeros(3904, np.int64)
    totals_before(c, t1), totals_after(c, t2, chunks)
    s1, s2 = np.empty(cols), np.empty(cols)
    wsum_before(c, w, s1), wsum_after(c, w, s2)
    assert (t1 == t2).all() and np.allclose(s1, s2, rtol=1e-12)
    print(f"{cols} channels: bin totals {best_ms(totals_before, c, t1, zero=t1):.2f} -> "
          f"{best_ms(totals_after, c, t2, chunks, zero=t2):.2f} ms, weighted sums "
          f"{best_ms(wsum_before, c, w, s1):.2f} -> {best_ms(wsum_after, c, w, s2):.2f} ms")
