"""The numba kernels of the log histograms (lib/stats/loghist.py) on CPU tensors: a fused
one-pass count, the fold of the 16-bit counts into the int32 table, and the three readers.
Each is None without numba; the histogram then uses torch ops (as it does on CUDA)."""
from __future__ import annotations

import numpy as np

from lib.stats.float32_bits import FLOAT32_ABS_MASK

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is in requirements.txt
    numba = njit = prange = None

TILE_COLUMNS = 16  # a thread's share: 16 float32 channels are one 64-byte cache line


def kernel_threads() -> int:
    """The threads numba runs the kernels on."""
    return numba.get_num_threads()


if njit is not None:
    @njit(parallel=True, cache=True, nogil=True, boundscheck=False)
    def fused_add(x, bits, counts, total, maximum, shift, offset, nbins, nzoom, zoom_shift,
                  zoom_offset):  # pragma: no cover
        """One pass over x [tokens, columns] (float32, and the same memory as int32 bits):
        one increment of `counts` (uint16) per value (its fine bin inside the zoom window, else
        its coarse bin), per-channel float64 sums and maxima of |x|. Threads own blocks of 16
        channels, so there are no races. Token by token, the 16 bin indices are computed
        first (a vectorisable loop), then incremented: consecutive increments go to different
        channels' rows, so they do not wait on each other."""
        tokens, columns = x.shape
        flat = counts.reshape(-1)
        row = counts.shape[1]
        for blk in prange((columns + TILE_COLUMNS - 1) // TILE_COLUMNS):
            j0 = blk * TILE_COLUMNS
            width = min(TILE_COLUMNS, columns - j0)
            index = np.empty(TILE_COLUMNS, dtype=np.int64)
            acc = np.zeros(TILE_COLUMNS)
            peak = np.zeros(TILE_COLUMNS, dtype=np.float32)
            for c in range(width):
                peak[c] = maximum[j0 + c]
            for t in range(tokens):
                for c in range(width):
                    v = abs(x[t, j0 + c])
                    acc[c] += v
                    peak[c] = max(peak[c], v)
                    ubits = bits[t, j0 + c] & FLOAT32_ABS_MASK
                    coarse = min(max((ubits >> shift) - offset, 0), nbins - 1)
                    z = (ubits >> zoom_shift) - zoom_offset
                    index[c] = (j0 + c) * row + (nbins + z if (z >= 0) & (z < nzoom) else coarse)
                for c in range(width):
                    flat[index[c]] += 1
            for c in range(width):
                total[j0 + c] += acc[c]
                maximum[j0 + c] = peak[c]

    @njit(parallel=True, cache=True, nogil=True)
    def fused_fold(pending, store):  # pragma: no cover
        """store += pending; pending = 0 (one pass over both tables)."""
        for j in prange(store.shape[0]):
            for b in range(store.shape[1]):
                store[j, b] += pending[j, b]
                pending[j, b] = 0

    @njit(parallel=True, cache=True, nogil=True)
    def fused_top_mean(counts, descending, lower, upper, maximum, k, out):  # pragma: no cover
        """Walk each channel's bins from the top value down until k values are taken."""
        columns = counts.shape[0]
        for j in prange(columns):
            remaining = k
            acc = 0.0
            for b in descending:
                c = counts[j, b]
                if c == 0:
                    continue
                hi = min(upper[b], maximum[j])
                lo = min(lower[b], hi)
                take = min(c, remaining)
                acc += take * (hi - (take / c) * (hi - lo) / 2)
                remaining -= take
                if remaining == 0:
                    break
            out[j] = acc / k

    # fastmath lets the sum be reordered, hence vectorised (timings:
    # docs/results/benchmark_selectivity/NOTES.md), the float64 rounding differences far below
    # the bins' own error
    @njit(parallel=True, cache=True, nogil=True, fastmath=True)
    def fused_weighted_sums(counts, weights, out):  # pragma: no cover
        """out[j] = sum over bins b of counts[j, b] * weights[b]."""
        columns, nbins = counts.shape
        for j in prange(columns):
            row = counts[j]
            acc = 0.0
            for b in range(nbins):
                acc += row[b] * weights[b]
            out[j] = acc

    @njit(parallel=True, cache=True, nogil=True)
    def fused_bin_totals(counts, out, chunks):  # pragma: no cover
        """out[b] += sum over channels of counts[:, b]. Each of `chunks` threads sums whole
        contiguous rows into its own partial totals (vectorised, sequential reads, unlike
        threads owning stripes of bins across every row), added up at the end."""
        columns, nbins = counts.shape
        partial = np.zeros((chunks, nbins), dtype=np.int64)
        for c in prange(chunks):
            acc = partial[c]
            for j in range(c * columns // chunks, (c + 1) * columns // chunks):
                row = counts[j]
                for b in range(nbins):
                    acc[b] += row[b]
        for c in range(chunks):
            for b in range(nbins):
                out[b] += partial[c, b]
else:  # pragma: no cover
    fused_add = None
    fused_fold = None
    fused_top_mean = None
    fused_weighted_sums = None
    fused_bin_totals = None
