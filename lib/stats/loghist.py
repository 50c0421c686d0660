"""Per-channel histograms of |x| on a log scale, for quantiles without storing activations.

Bins come straight from the float32 bit pattern (lib/stats/float32_bits.py): for a non-negative
float the bits increase with the value, so `bits >> (FLOAT32_MANTISSA_BITS - k)` is the exponent
followed by the top k mantissa bits, i.e. 2**k bins per octave, each at most 2**-k wide relative
to its lower edge (k=6: 1.1%).
Building the bin index costs a shift and a clamp per element; no logarithm is computed.
Values below 2**MIN_EXP (zeros included) share the first bin; values at or above 2**MAX_EXP
the last. Within a bin, values are read as spread uniformly, which bounds every estimate by
the bin width.

Counting values above the activity threshold needs more than that: the same token id repeats
the same activation vector, so tied values can pile up inside the bin that holds the threshold.
A zoom window therefore gives the neighbourhood of the threshold much finer bins (2**12 per
octave, 0.024% wide) for every channel: it is centred on the threshold of the first batch,
and the final threshold almost always falls inside it (otherwise the coarse bins answer).

The cost is one table increment per value, and it follows how many cache lines of the tables
a batch touches (docs/results/benchmark_selectivity/NOTES.md): so the coarse bins are as few as
the spikiness error allows, the window as narrow as the threshold's drift from the first batch
allows, and on the CPU the counts are 16-bit, folded into the int32 table every 65535 tokens.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from lib.stats.float32_bits import (
    FLOAT32_EXPONENT_BIAS,
    FLOAT32_MANTISSA_BITS,
    bits_to_float,
    float_bits,
)

# the numba kernels on CPU tensors, None without numba (torch ops then, as on CUDA); bound here
# under the names the histogram calls, so a test can switch them off to compare with torch ops
from lib.stats.loghist_kernels import fused_add as _fused_add
from lib.stats.loghist_kernels import fused_bin_totals as _fused_bin_totals
from lib.stats.loghist_kernels import fused_fold as _fused_fold
from lib.stats.loghist_kernels import fused_top_mean as _fused_top_mean
from lib.stats.loghist_kernels import fused_weighted_sums as _fused_weighted_sums
from lib.stats.loghist_kernels import kernel_threads

# the fewest bins that keep the errors within the targets on every SmolLM2 layer input
# (scripts/check_stats_accuracy.py): 16 coarse bins per octave put spikiness 3% off, 32 1.5%;
# a 2**11 window split the ties of block 0 (active_frac 0.010 off at 4 x 256 tokens, 0.004 now)
MANTISSA_BITS = 6
ZOOM_BITS = 12
# the threshold moved up to 4.4% from its first-batch estimate on SmolLM2's inputs
ZOOM_HALF_WIDTH = 0.12  # the window spans threshold / 1.12 .. threshold * 1.12
ZOOM_GUESS_SAMPLES = 1 << 16  # values the window's centre is estimated from
MIN_EXP = -20
TOP_MEAN_CHUNK = 1 << 22  # float64 elements per temporary in the torch top_mean
MAX_EXP = 16
PENDING_TOKENS = 65535  # a 16-bit count cannot overflow before this many tokens


class LogHistogram:
    """Counts of |x| per (channel, bin), exact per-channel sums and maxima, and a fine zoom
    window around the `zoom_quantile` of the first batch.

    Storage is one int32 table per channel row (`store`): the coarse bins, then the window's
    fine bins. The window covers whole coarse bins, and a value inside it is counted only in its
    fine bin, so every value costs one increment; `counts` folds the window back in. The CPU
    kernel increments a 16-bit copy of the table instead (half the cache lines), which is
    added into `store` before it can overflow and whenever `store` is read."""

    def __init__(self, columns: int, device: torch.device, mantissa_bits: int = MANTISSA_BITS,
                 zoom_quantile: float | None = None, zoom_bits: int = ZOOM_BITS,
                 zoom_half_width: float = ZOOM_HALF_WIDTH):
        self.columns = columns
        self.device = torch.device(device)
        self.k = mantissa_bits
        self.nbins = (MAX_EXP - MIN_EXP) << mantissa_bits
        # coarse bin b holds the bits whose top part (bits >> shift) is b + offset
        self.shift = FLOAT32_MANTISSA_BITS - mantissa_bits
        self.offset = (FLOAT32_EXPONENT_BIAS + MIN_EXP) << mantissa_bits
        self.zoom_bits, self.zoom_half_width = zoom_bits, zoom_half_width
        self.zoom_shift = FLOAT32_MANTISSA_BITS - zoom_bits
        self.fine_per_coarse = 1 << (zoom_bits - mantissa_bits)
        self.total = torch.zeros(columns, dtype=torch.float64, device=device)
        self.maximum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.tokens = 0
        self.zoom_quantile = zoom_quantile
        self.zoom_low = self.zoom_high = 0  # the window's coarse bins: [zoom_low, zoom_high)
        self._store: torch.Tensor | None = None  # int32 counts (on the CPU: at the first fold)
        self._pending: torch.Tensor | None = None  # 16-bit counts not yet in _store (CPU)
        self._width = 0
        self._pending_tokens = 0
        self._layout: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def zoom_offset(self) -> int:
        """Fine bin of the window's lower edge, as bits >> zoom_shift."""
        return (self.zoom_low + self.offset) * self.fine_per_coarse

    @property
    def nzoom(self) -> int:
        return (self.zoom_high - self.zoom_low) * self.fine_per_coarse

    # -- gathering ---------------------------------------------------------------------------
    def add(self, x: torch.Tensor) -> None:
        """x: [tokens, columns] activations (signs are ignored: the histogram is of |x|)."""
        x = x.detach().float().contiguous()
        self._layout = None  # the top edge follows the maximum
        if not self._width:
            self._allocate(x)
        if self._pending is None:
            a = x.abs()
            self.total += a.sum(dim=0, dtype=torch.float64)
            torch.maximum(self.maximum, a.amax(dim=0), out=self.maximum)
            self._torch_scatter(a)
        else:
            for start in range(0, x.shape[0], PENDING_TOKENS):
                self._fused_add(x[start:start + PENDING_TOKENS])
        self.tokens += x.shape[0]

    def _allocate(self, x: torch.Tensor) -> None:
        self._place_window(x)
        self._width = width = self.nbins + self.nzoom
        if width * self.columns >= 2**31:
            raise ValueError(f"{self.columns} channels are too many for int32 bin indices")
        if _fused_add is not None and x.device.type == "cpu":
            # the int32 table only once 16 bits could overflow: most runs read the 16-bit one
            self._pending = torch.zeros(self.columns, width, dtype=torch.int16)
        else:
            self._store = torch.zeros(self.columns, width, dtype=torch.int32, device=x.device)

    def _fused_add(self, x: torch.Tensor) -> None:
        """One pass over x: bin counts (16-bit), sums and maxima, no temporary copies."""
        if self._pending_tokens + x.shape[0] > PENDING_TOKENS:
            self._fold()
        _fused_add(x.numpy(), x.view(torch.int32).numpy(), self._pending.numpy().view(np.uint16),
                   self.total.numpy(), self.maximum.numpy(), self.shift, self.offset,
                   self.nbins, self.nzoom, self.zoom_shift, self.zoom_offset)
        self._pending_tokens += x.shape[0]

    def _fold(self) -> None:
        """Add the 16-bit counts into the int32 table (made here, the first time) and clear
        them."""
        if self._store is None:
            self._store = torch.zeros(self.columns, self._width, dtype=torch.int32)
        if self._pending_tokens:
            _fused_fold(self._pending.numpy().view(np.uint16), self._store.numpy())
            self._pending_tokens = 0

    @property
    def store(self) -> torch.Tensor | None:
        """[columns, coarse bins + window bins] int32 counts, everything added so far."""
        if self._pending is not None:
            self._fold()
        return self._store

    @property
    def table(self) -> torch.Tensor | None:
        """What the readers count on: the 16-bit table while nothing was folded (all counts
        are there: it saves the int32 copy), else `store`. 16-bit tables go to numba
        kernels only, which read them as unsigned."""
        if self._pending is not None and self._store is None:
            return self._pending
        return self.store

    def _place_window(self, x: torch.Tensor) -> None:
        if self.zoom_quantile is None:
            return
        # the window only needs a rough centre: a strided subsample is plenty and cheap
        flat = x.reshape(-1)
        step = max(1, flat.numel() // ZOOM_GUESS_SAMPLES)
        while math.gcd(step, self.columns) != 1:  # a stride sharing a factor with the row
            step += 1                             # length would see only some channels
        sample = flat[::step].abs()
        guess = float(torch.kthvalue(sample, 1 + int(self.zoom_quantile * (sample.numel() - 1)))
                      .values)
        low = self._coarse_bin(guess / (1 + self.zoom_half_width))
        high = self._coarse_bin(guess * (1 + self.zoom_half_width)) + 1
        # the end bins also hold clamped out-of-range values: never zoom into them
        self.zoom_low, self.zoom_high = max(low, 1), min(high, self.nbins - 1)
        if self.zoom_high <= self.zoom_low:
            self.zoom_low = self.zoom_high = 0

    def _coarse_bin(self, value: float) -> int:
        return (float_bits(value) >> self.shift) - self.offset

    def _torch_scatter(self, a: torch.Tensor) -> None:
        """Bin counts of a = |x| with torch ops (CUDA, or CPU without numba)."""
        bits = a.view(torch.int32)
        index = ((bits >> self.shift) - self.offset).clamp_(0, self.nbins - 1)
        if self.nzoom:
            fine = (bits >> self.zoom_shift) - self.zoom_offset
            index = torch.where((fine >= 0) & (fine < self.nzoom), fine + self.nbins, index)
        row = torch.arange(self.columns, device=a.device, dtype=torch.int32)
        index = index + row * self._store.shape[1]
        ones = torch.ones(index.numel(), dtype=torch.int32, device=a.device)
        self._store.reshape(-1).index_add_(0, index.reshape(-1), ones)

    @property
    def counts(self) -> torch.Tensor:
        """[columns, nbins] coarse counts, the zoom window folded back into its coarse bins
        (a copy, for inspection: the readers work on `store` directly)."""
        folded = self.store[:, :self.nbins].clone()
        if self.nzoom:
            folded[:, self.zoom_low:self.zoom_high] += self.zoom_counts.reshape(
                self.columns, -1, self.fine_per_coarse).sum(dim=-1, dtype=torch.int32)
        return folded

    @property
    def zoom_counts(self) -> torch.Tensor:
        """[columns, window bins] fine counts."""
        return self.store[:, self.nbins:]

    @property
    def zoom_above(self) -> torch.Tensor:
        """Per channel, how many values lie above the window (exact: it ends on a coarse edge)."""
        return self.store[:, self.zoom_high:self.nbins].sum(dim=1, dtype=torch.int64)

    # -- reading -----------------------------------------------------------------------------
    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper value of every coarse bin (float64, [nbins])."""
        index = torch.arange(self.nbins + 1, device=self.device) + self.offset
        bounds = bits_to_float(index << self.shift)
        lower, upper = bounds[:-1].clone(), bounds[1:].clone()
        lower[0] = 0.0
        upper[-1] = max(float(self.maximum.max()), float(upper[-1]))
        return lower, upper

    def zoom_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(self.nzoom + 1, device=self.device)
        bounds = bits_to_float((index + self.zoom_offset) << self.zoom_shift)
        return bounds[:-1], bounds[1:]

    def layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every column of `store`: its lower and upper value (float64), and the order of
        the columns by value. The coarse bins under the window are empty and sort anywhere.
        Kept until the next `add`: the three readers share it."""
        if self._layout is None:
            self._layout = self._make_layout()
        return self._layout

    def _make_layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lower, upper = self.edges()
        if self.nzoom:
            fine_lower, fine_upper = self.zoom_edges()
            lower, upper = torch.cat([lower, fine_lower]), torch.cat([upper, fine_upper])
            # the (empty) coarse bins under the window: zero width, so no share of anything
            lower[self.zoom_low:self.zoom_high] = upper[self.zoom_low:self.zoom_high]
        return lower, upper, torch.argsort(lower, stable=True)

    def quantile_all(self, q: float) -> float:
        """q-quantile of every value seen (all channels), interpolating between order
        statistics like numpy's default 'linear' method; ranks inside the zoom window are
        read from its fine bins."""
        lower, upper, order = self.layout()
        totals = _bin_totals(self.table)[order]
        lower, upper = lower[order], upper[order]
        pos = q * (self.tokens * self.columns - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        v_lo = _read_rank(totals, lower, upper, lo)
        v_hi = _read_rank(totals, lower, upper, hi) if hi != lo else v_lo
        return v_lo + (pos - lo) * (v_hi - v_lo)

    def count_above(self, threshold: float) -> torch.Tensor:
        """Per channel, how many values exceed `threshold` (float64; values in the bin holding
        the threshold are counted in proportion to the part of the bin above it)."""
        lower, upper, _ = self.layout()
        return _share_above(self.table, lower, upper, threshold)

    def top_mean(self, k: int) -> torch.Tensor:
        """Per channel, the mean of its k largest values (k <= tokens). In each bin the values
        are read as spread evenly; the top occupied bin ends at the channel's exact maximum."""
        lower, upper, order = self.layout()
        descending = order.flip(0).contiguous()
        table = self.table
        if _fused_top_mean is not None and table.device.type == "cpu":
            out = torch.empty(self.columns, dtype=torch.float64)
            _fused_top_mean(_numpy_counts(table), descending.numpy(), lower.numpy(),
                            upper.numpy(), self.maximum.double().numpy(), k, out.numpy())
            return out
        return self._torch_top_mean(k, descending, lower, upper)

    def _torch_top_mean(self, k: int, descending: torch.Tensor, lower: torch.Tensor,
                        upper: torch.Tensor) -> torch.Tensor:
        # channel rows in chunks (float64 temporaries of a whole table cost ~10x its size), and
        # the running count along each row: a scan over the contiguous dimension is ~20x faster
        # on CUDA than over the outer one (measured on an H200, docs/results/benchmark_selectivity)
        out = torch.empty(self.columns, dtype=torch.float64, device=self.store.device)
        lower, upper = lower[descending], upper[descending]
        step = max(1, TOP_MEAN_CHUNK // descending.numel())
        for start in range(0, self.columns, step):
            rows = slice(start, start + step)
            counts = self.store[rows][:, descending].double()  # [channels, bins top down]
            top = torch.minimum(upper, self.maximum[rows].double().unsqueeze(1))
            bottom = torch.minimum(lower, top)
            before = torch.cumsum(counts, 1) - counts
            taken = torch.minimum((k - before).clamp(min=0), counts)
            # the `taken` largest of `counts` values spread uniformly over [bottom, top]
            share = torch.where(counts > 0, taken / counts.clamp_min(1), torch.zeros_like(counts))
            out[rows] = (taken * (top - share * (top - bottom) / 2)).sum(dim=1) / k
        return out

    def nbytes(self) -> int:
        return sum(0 if t is None else t.numel() * t.element_size()
                   for t in (self._store, self._pending))


def _read_rank(counts: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, rank: int) -> float:
    """Value of the `rank`-th smallest (0-based) entry, the values of each bin spread evenly."""
    cum = torch.cumsum(counts, 0)
    b = int(torch.searchsorted(cum, torch.tensor(rank, device=cum.device), right=True))
    before = int(cum[b] - counts[b])
    within = (rank - before + 0.5) / int(counts[b])
    return float(lower[b] + within * (upper[b] - lower[b]))


def _share_above(counts: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                 threshold: float) -> torch.Tensor:
    """sum over bins of count * (part of the bin above threshold); counts: [columns, bins]."""
    share = ((upper - threshold) / (upper - lower).clamp_min(1e-300)).clamp(0, 1)
    if _fused_weighted_sums is not None and counts.device.type == "cpu":
        out = torch.empty(counts.shape[0], dtype=torch.float64)
        _fused_weighted_sums(_numpy_counts(counts), share.contiguous().numpy(), out.numpy())
        return out
    return counts.double() @ share


def _bin_totals(counts: torch.Tensor) -> torch.Tensor:
    """Per bin, the count over all channels (int64, [bins]); counts: [columns, bins]."""
    if _fused_bin_totals is not None and counts.device.type == "cpu":
        out = torch.zeros(counts.shape[1], dtype=torch.int64)
        chunks = max(1, min(counts.shape[0], kernel_threads()))
        _fused_bin_totals(_numpy_counts(counts), out.numpy(), chunks)
        return out
    return counts.sum(dim=0, dtype=torch.int64)


def _numpy_counts(counts: torch.Tensor) -> np.ndarray:
    """A count table for the numba kernels: 16-bit counts are unsigned (torch has int16)."""
    array = counts.numpy()
    return array.view(np.uint16) if array.dtype == np.int16 else array


def exact_quantile(values: torch.Tensor, q: float) -> float:
    """numpy's 'linear' quantile via kthvalue (torch.quantile caps its input size)."""
    values = values.float().cpu()
    pos = q * (values.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = float(torch.kthvalue(values, lo + 1).values)
    v_hi = float(torch.kthvalue(values, hi + 1).values) if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)
