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
MIN_EXP = -20
MAX_EXP = 16


def _bits_to_float(bits: torch.Tensor) -> torch.Tensor:
    return bits.to(torch.int32).view(torch.float32).double()


def _float_bits(value: float) -> int:
    return int(torch.tensor([value], dtype=torch.float32).view(torch.int32))


class LogHistogram:
    """Counts of |x| per (channel, bin), exact per-channel sums and maxima, and a fine zoom
    window around the `zoom_quantile` of the first batch."""

    def __init__(self, columns: int, device: torch.device, mantissa_bits: int = MANTISSA_BITS,
                 zoom_quantile: float | None = None):
        self.columns = columns
        self.k = mantissa_bits
        self.nbins = (MAX_EXP - MIN_EXP) << mantissa_bits
        self.offset = (127 + MIN_EXP) << mantissa_bits
        # channel-major, so one channel's bins are contiguous (cache-friendly updates)
        self.counts = torch.zeros(columns, self.nbins, dtype=torch.int32, device=device)
        self.total = torch.zeros(columns, dtype=torch.float64, device=device)
        self.maximum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.tokens = 0
        self.zoom_quantile = zoom_quantile
        self.zoom_offset = 0  # fine bin of the window's lower edge, as bits >> (23 - ZOOM_BITS)
        self.zoom_counts = torch.zeros(columns, 0, dtype=torch.int32, device=device)
        self.zoom_above = torch.zeros(columns, dtype=torch.int64, device=device)
        self._zoom_ready = zoom_quantile is None
        if self.nbins * columns >= 2**31:
            raise ValueError(f"{columns} channels are too many for int32 bin indices")

    # -- gathering ---------------------------------------------------------------------------
    def add(self, x: torch.Tensor) -> None:
        """x: [tokens, columns] activations (signs are ignored: the histogram is of |x|)."""
        x = x.detach().float().contiguous()
        if not self._zoom_ready:
            self._open_zoom(x)
        a = x.abs()
        self.total += a.sum(dim=0, dtype=torch.float64)
        torch.maximum(self.maximum, a.amax(dim=0), out=self.maximum)
        if _fused_add is not None and x.device.type == "cpu":
            # channel-major copy: each channel's bins then stay in L1 while its tokens stream by
            bits = a.view(torch.int32).t().contiguous()
            _fused_add(bits.numpy(), self.counts.numpy(), 23 - self.k, self.offset, self.nbins,
                       self.zoom_counts.numpy(), self.zoom_above.numpy(), 23 - ZOOM_BITS,
                       self.zoom_offset)
        else:
            self._torch_scatter(a)
        self.tokens += x.shape[0]

    def _open_zoom(self, x: torch.Tensor) -> None:
        self._zoom_ready = True
        guess = exact_quantile(x.abs().reshape(-1), self.zoom_quantile)
        if guess <= 2.0 ** MIN_EXP:
            return
        shift = 23 - ZOOM_BITS
        low = _float_bits(guess / (1 + ZOOM_HALF_WIDTH)) >> shift
        high = (_float_bits(guess * (1 + ZOOM_HALF_WIDTH)) >> shift) + 1
        self.zoom_offset = low
        self.zoom_counts = torch.zeros(self.columns, high - low, dtype=torch.int32,
                                       device=x.device)

    def _torch_scatter(self, a: torch.Tensor) -> None:
        """Coarse and zoom bin counts of a = |x| with torch ops (CUDA, or CPU without numba)."""
        bits = a.view(torch.int32)
        channel_base = torch.arange(self.columns, device=a.device, dtype=torch.int32)
        flat = (bits >> (23 - self.k)).clamp_(self.offset, self.offset + self.nbins - 1)
        flat.add_(channel_base * self.nbins - self.offset)
        ones = torch.ones(flat.numel(), dtype=torch.int32, device=a.device)
        self.counts.reshape(-1).index_add_(0, flat.reshape(-1), ones)
        nzoom = self.zoom_counts.shape[1]
        if nzoom:
            fine = (bits >> (23 - ZOOM_BITS)) - self.zoom_offset
            self.zoom_above += (fine >= nzoom).sum(dim=0)
            inside = (fine >= 0) & (fine < nzoom)
            index = (fine + channel_base * nzoom)[inside]
            self.zoom_counts.reshape(-1).index_add_(0, index, ones[:index.numel()])

    # -- reading -----------------------------------------------------------------------------
    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper value of every coarse bin (float64, [nbins])."""
        index = torch.arange(self.nbins + 1, device=self.counts.device) + self.offset
        bounds = _bits_to_float(index << (23 - self.k))
        lower, upper = bounds[:-1].clone(), bounds[1:].clone()
        lower[0] = 0.0
        upper[-1] = max(float(self.maximum.max()), float(upper[-1]))
        return lower, upper

    def zoom_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(self.zoom_counts.shape[1] + 1, device=self.counts.device)
        bounds = _bits_to_float((index + self.zoom_offset) << (23 - ZOOM_BITS))
        return bounds[:-1], bounds[1:]

    def matrix(self) -> torch.Tensor:
        """Counts as [nbins, columns] int64."""
        return self.counts.t().to(torch.int64)

    def quantile_all(self, q: float) -> float:
        """q-quantile of every value seen (all channels), interpolating between order
        statistics like numpy's default 'linear' method. Ranks that fall inside the zoom
        window are read from its fine bins."""
        counts = self.counts.sum(dim=0, dtype=torch.int64)
        n = int(counts.sum())
        pos = q * (n - 1)
        values = [self._value_at_rank(rank, counts) for rank in (math.floor(pos), math.ceil(pos))]
        return values[0] + (pos - math.floor(pos)) * (values[1] - values[0])

    def _value_at_rank(self, rank: int, coarse: torch.Tensor) -> float:
        if self.zoom_counts.shape[1]:
            fine = self.zoom_counts.sum(dim=0, dtype=torch.int64)
            below = int(coarse.sum()) - int(fine.sum()) - int(self.zoom_above.sum())
            if below <= rank < below + int(fine.sum()):
                return _read_rank(fine, *self.zoom_edges(), rank - below)
        return _read_rank(coarse, *self.edges(), rank)

    def count_above(self, threshold: float) -> torch.Tensor:
        """Per channel, how many values exceed `threshold` (float64; values in the bin holding
        the threshold are counted in proportion to the part of the bin above it)."""
        if self.zoom_counts.shape[1]:
            lower, upper = self.zoom_edges()
            if lower[0] <= threshold < upper[-1]:
                return self.zoom_above.double() + _share_above(self.zoom_counts, lower, upper,
                                                               threshold)
        lower, upper = self.edges()
        return _share_above(self.counts, lower, upper, threshold)

    def top_mean(self, k: int) -> torch.Tensor:
        """Per channel, the mean of its k largest values (k <= tokens). In each bin the values
        are read as spread evenly; the top occupied bin ends at the channel's exact maximum."""
        if _fused_top_mean is not None and self.counts.device.type == "cpu":
            lower, upper = self.edges()
            out = torch.empty(self.columns, dtype=torch.float64)
            _fused_top_mean(self.counts.numpy(), lower.numpy(), upper.numpy(),
                            self.maximum.double().numpy(), k, out.numpy())
            return out
        return self._torch_top_mean(k)

    def _torch_top_mean(self, k: int) -> torch.Tensor:
        counts = self.matrix().flip(0).double()  # from the top bin down
        lower, upper = (e.flip(0).reshape(-1, 1) for e in self.edges())
        upper = torch.minimum(upper, self.maximum.double().reshape(1, -1))
        lower = torch.minimum(lower, upper)
        before = torch.cumsum(counts, 0) - counts
        taken = torch.minimum((k - before).clamp(min=0), counts)
        # the `taken` largest of `counts` values spread uniformly over [lower, upper]
        share = torch.where(counts > 0, taken / counts.clamp_min(1), torch.zeros_like(counts))
        mean_taken = upper - share * (upper - lower) / 2
        return (taken * mean_taken).sum(dim=0) / k

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.counts, self.zoom_counts))


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
    return counts.double() @ share


def exact_quantile(values: torch.Tensor, q: float) -> float:
    """numpy's 'linear' quantile via kthvalue (torch.quantile caps its input size)."""
    values = values.float().cpu()
    pos = q * (values.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    v_lo = float(torch.kthvalue(values, lo + 1).values)
    v_hi = float(torch.kthvalue(values, hi + 1).values) if hi != lo else v_lo
    return v_lo + (pos - lo) * (v_hi - v_lo)


if njit is not None:
    @njit(parallel=True, cache=True, nogil=True)
    def _fused_add(bits, counts, shift, offset, nbins, zoom_counts, zoom_above, zoom_shift,
                   zoom_offset):  # pragma: no cover
        """Coarse and zoom-window bin counts of |x|; bits: [columns, tokens] float32 bits of
        |x|. Channels run in parallel and own their rows, so there are no races."""
        columns, tokens = bits.shape
        nzoom = zoom_counts.shape[1]
        for j in prange(columns):
            above = 0
            for t in range(tokens):
                ubits = bits[j, t]
                b = (ubits >> shift) - offset
                if b < 0:
                    b = 0
                elif b >= nbins:
                    b = nbins - 1
                counts[j, b] += 1
                if nzoom > 0:
                    z = (ubits >> zoom_shift) - zoom_offset
                    if z >= nzoom:
                        above += 1
                    elif z >= 0:
                        zoom_counts[j, z] += 1
            zoom_above[j] += above

    @njit(parallel=True, cache=True, nogil=True)
    def _fused_top_mean(counts, lower, upper, maximum, k, out):  # pragma: no cover
        """Walk each channel's bins from the top until k values are taken."""
        columns, nbins = counts.shape
        for j in prange(columns):
            remaining = k
            acc = 0.0
            for b in range(nbins - 1, -1, -1):
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
else:  # pragma: no cover
    _fused_add = None
    _fused_top_mean = None
