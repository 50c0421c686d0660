"""Per-channel histograms of |x| on a log scale, for quantiles without storing activations.

Bins come straight from the float32 bit pattern: for a non-negative float the bits increase
with the value, so `bits >> (23 - k)` is the exponent followed by the top k mantissa bits,
i.e. 2**k bins per octave, each at most 2**-k wide relative to its lower edge (k=7: 0.78%).
Building the bin index costs a shift and a clamp per element; no logarithm is computed.
Values below 2**MIN_EXP (zeros included) share the first bin; values at or above 2**MAX_EXP
the last. Within a bin, values are read as spread uniformly, which bounds every estimate by
the bin width.

Counting values above the activity threshold needs more than that: the same token id repeats
the same activation vector, so tied values can pile up inside the bin that holds the threshold.
A zoom window therefore gives the neighbourhood of the threshold much finer bins (2**12 per
octave, 0.024% wide) for every channel: it is centred on the threshold of the first batch,
and the final threshold almost always falls inside it (otherwise the coarse bins answer).
"""
from __future__ import annotations

import math

import torch

try:  # a fused one-pass kernel for CPU tensors; torch ops otherwise (and on CUDA)
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is in requirements.txt
    njit = None

MANTISSA_BITS = 7
ZOOM_BITS = 12
ZOOM_HALF_WIDTH = 0.15  # the window spans threshold / 1.15 .. threshold * 1.15
ZOOM_GUESS_SAMPLES = 1 << 16  # values the window's centre is estimated from
MIN_EXP = -20
TOP_MEAN_CHUNK = 1 << 22  # float64 elements per temporary in the torch top_mean
MAX_EXP = 16


def _bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    return bits.to(torch.int32).view(torch.float32).double()


def _float_bits(value: float) -> int:
    return int(torch.tensor([value], dtype=torch.float32).view(torch.int32))


class LogHistogram:
    """Counts of |x| per (channel, bin), exact per-channel sums and maxima, and a fine zoom
    window around the `zoom_quantile` of the first batch.

    Storage is one int32 table per channel row: the coarse bins, then the window's fine bins.
    The window covers whole coarse bins, and a value inside it is counted only in its fine
    bin, so every value costs one increment; `counts` folds the window back in."""

    def __init__(self, columns: int, device: torch.device, mantissa_bits: int = MANTISSA_BITS,
                 zoom_quantile: float | None = None):
        self.columns = columns
        self.device = torch.device(device)
        self.k = mantissa_bits
        self.nbins = (MAX_EXP - MIN_EXP) << mantissa_bits
        self.offset = (127 + MIN_EXP) << mantissa_bits
        self.fine_per_coarse = 1 << (ZOOM_BITS - mantissa_bits)
        self.total = torch.zeros(columns, dtype=torch.float64, device=device)
        self.maximum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.tokens = 0
        self.zoom_quantile = zoom_quantile
        self.zoom_low = self.zoom_high = 0  # the window's coarse bins: [zoom_low, zoom_high)
        self.store: torch.Tensor | None = None  # allocated once the window is placed
        self._layout: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def zoom_offset(self) -> int:
        """Fine bin of the window's lower edge, as bits >> (23 - ZOOM_BITS)."""
        return (self.zoom_low + self.offset) * self.fine_per_coarse

    @property
    def nzoom(self) -> int:
        return (self.zoom_high - self.zoom_low) * self.fine_per_coarse

    # -- gathering ---------------------------------------------------------------------------
    def add(self, x: torch.Tensor) -> None:
        """x: [tokens, columns] activations (signs are ignored: the histogram is of |x|)."""
        x = x.detach().float().contiguous()
        self._layout = None  # the top edge follows the maximum
        if self.store is None:
            self._place_window(x)
            if (self.nbins + self.nzoom) * self.columns >= 2**31:
                raise ValueError(f"{self.columns} channels are too many for int32 bin indices")
            self.store = torch.zeros(self.columns, self.nbins + self.nzoom, dtype=torch.int32,
                                     device=x.device)
        if _fused_add is not None and x.device.type == "cpu":
            # one pass over x: bin counts, sums and maxima, no temporary copies
            _fused_add(x.numpy(), x.view(torch.int32).numpy(), self.store.numpy(),
                       self.total.numpy(), self.maximum.numpy(), 23 - self.k, self.offset,
                       self.nbins, self.nzoom, 23 - ZOOM_BITS, self.zoom_offset)
        else:
            a = x.abs()
            self.total += a.sum(dim=0, dtype=torch.float64)
            torch.maximum(self.maximum, a.amax(dim=0), out=self.maximum)
            self._torch_scatter(a)
        self.tokens += x.shape[0]

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
        low = self._coarse_bin(guess / (1 + ZOOM_HALF_WIDTH))
        high = self._coarse_bin(guess * (1 + ZOOM_HALF_WIDTH)) + 1
        # the end bins also hold clamped out-of-range values: never zoom into them
        self.zoom_low, self.zoom_high = max(low, 1), min(high, self.nbins - 1)
        if self.zoom_high <= self.zoom_low:
            self.zoom_low = self.zoom_high = 0

    def _coarse_bin(self, value: float) -> int:
        return (_float_bits(value) >> (23 - self.k)) - self.offset

    def _torch_scatter(self, a: torch.Tensor) -> None:
        """Bin counts of a = |x| with torch ops (CUDA, or CPU without numba)."""
        bits = a.view(torch.int32)
        index = ((bits >> (23 - self.k)) - self.offset).clamp_(0, self.nbins - 1)
        if self.nzoom:
            fine = (bits >> (23 - ZOOM_BITS)) - self.zoom_offset
            index = torch.where((fine >= 0) & (fine < self.nzoom), fine + self.nbins, index)
        row = torch.arange(self.columns, device=a.device, dtype=torch.int32)
        index = index + row * self.store.shape[1]
        ones = torch.ones(index.numel(), dtype=torch.int32, device=a.device)
        self.store.reshape(-1).index_add_(0, index.reshape(-1), ones)

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
        bounds = _bits_to_float(index << (23 - self.k))
        lower, upper = bounds[:-1].clone(), bounds[1:].clone()
        lower[0] = 0.0
        upper[-1] = max(float(self.maximum.max()), float(upper[-1]))
        return lower, upper

    def zoom_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(self.nzoom + 1, device=self.device)
        bounds = _bits_to_float((index + self.zoom_offset) << (23 - ZOOM_BITS))
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
        totals = _bin_totals(self.store)[order]
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
        return _share_above(self.store, lower, upper, threshold)

    def top_mean(self, k: int) -> torch.Tensor:
        """Per channel, the mean of its k largest values (k <= tokens). In each bin the values
        are read as spread evenly; the top occupied bin ends at the channel's exact maximum."""
        lower, upper, order = self.layout()
        descending = order.flip(0).contiguous()
        if _fused_top_mean is not None and self.store.device.type == "cpu":
            out = torch.empty(self.columns, dtype=torch.float64)
            _fused_top_mean(self.store.numpy(), descending.numpy(), lower.numpy(),
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
        return 0 if self.store is None else self.store.numel() * self.store.element_size()


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
        _fused_weighted_sums(counts.numpy(), share.contiguous().numpy(), out.numpy())
        return out
    return counts.double() @ share


def _bin_totals(counts: torch.Tensor) -> torch.Tensor:
    """Per bin, the count over all channels (int64, [bins]); counts: [columns, bins]."""
    if _fused_bin_totals is not None and counts.device.type == "cpu":
        out = torch.zeros(counts.shape[1], dtype=torch.int64)
        _fused_bin_totals(counts.numpy(), out.numpy())
        return out
    return counts.sum(dim=0, dtype=torch.int64)


def exact_quantile(values: torch.Tensor, q: float) -> float:
    """numpy's 'linear' quantile via kthvalue (torch.quantile caps its input size)."""
    values = values.float().cpu()
    pos = q * (values.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = float(torch.kthvalue(values, lo + 1).values)
    v_hi = float(torch.kthvalue(values, hi + 1).values) if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


if njit is not None:
    TILE_TOKENS = 256  # a tile of 256 tokens x 16 channels (16 KiB) stays in L1 ...
    TILE_COLUMNS = 16  # ... and 16 float32 channels are one 64-byte cache line

    @njit(parallel=True, cache=True, nogil=True)
    def _fused_add(x, bits, store, total, maximum, shift, offset, nbins, nzoom, zoom_shift,
                   zoom_offset):  # pragma: no cover
        """One pass over x [tokens, columns] (float32, and the same memory as int32 bits):
        one bin increment per value (its fine bin inside the zoom window, else its coarse
        bin), per-channel float64 sums and maxima of |x|. Threads own blocks of 16 channels,
        so there are no races; within a block the tokens go by in tiles so that each channel
        walks its own (L1-resident) bins in turn. No data-dependent branches."""
        tokens, columns = x.shape
        nblocks = (columns + TILE_COLUMNS - 1) // TILE_COLUMNS
        for blk in prange(nblocks):
            j0 = blk * TILE_COLUMNS
            j1 = min(j0 + TILE_COLUMNS, columns)
            for t0 in range(0, tokens, TILE_TOKENS):
                t1 = min(t0 + TILE_TOKENS, tokens)
                for j in range(j0, j1):
                    acc = 0.0
                    peak = maximum[j]
                    for t in range(t0, t1):
                        v = abs(x[t, j])
                        acc += v
                        peak = max(peak, v)
                        ubits = bits[t, j] & 0x7FFFFFFF
                        coarse = min(max((ubits >> shift) - offset, 0), nbins - 1)
                        z = (ubits >> zoom_shift) - zoom_offset
                        store[j, nbins + z if 0 <= z < nzoom else coarse] += 1
                    total[j] += acc
                    maximum[j] = peak

    @njit(parallel=True, cache=True, nogil=True)
    def _fused_top_mean(counts, descending, lower, upper, maximum, k, out):  # pragma: no cover
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

    @njit(parallel=True, cache=True, nogil=True)
    def _fused_weighted_sums(counts, weights, out):  # pragma: no cover
        """out[j] = sum over bins b of counts[j, b] * weights[b]."""
        columns, nbins = counts.shape
        for j in prange(columns):
            acc = 0.0
            for b in range(nbins):
                acc += counts[j, b] * weights[b]
            out[j] = acc

    @njit(parallel=True, cache=True, nogil=True)
    def _fused_bin_totals(counts, out):  # pragma: no cover
        """out[b] = sum over channels of counts[:, b]; threads own stripes of 256 bins."""
        columns, nbins = counts.shape
        for stripe in prange((nbins + 255) // 256):
            b0 = stripe * 256
            b1 = min(b0 + 256, nbins)
            for j in range(columns):
                for b in range(b0, b1):
                    out[b] += counts[j, b]
else:  # pragma: no cover
    _fused_add = None
    _fused_top_mean = None
    _fused_weighted_sums = None
    _fused_bin_totals = None
