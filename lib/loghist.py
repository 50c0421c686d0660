"""Per-channel histograms of |x| on a log scale, for quantiles without storing activations.

Bins come straight from the float32 bit pattern: for a non-negative float the bits increase
with the value, so `bits >> (23 - k)` is the exponent followed by the top k mantissa bits,
i.e. 2**k bins per octave, each at most 2**-k wide relative to its lower edge (k=7: 0.78%).
Building the bin index costs one shift and one clamp per element; no log is computed.
Values below 2**MIN_EXP (zeros included) share the first bin; values at or above 2**MAX_EXP
the last. Within a bin, values are read as spread uniformly, which bounds every estimate
below by the bin width.
"""
from __future__ import annotations

import math

import torch

try:  # a fused one-pass kernel for CPU tensors; torch ops otherwise (and on CUDA)
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is in requirements.txt
    njit = None

MANTISSA_BITS = 7
MIN_EXP = -20
MAX_EXP = 16


class LogHistogram:
    """Counts of |x| per (bin, channel), plus exact per-channel sums and maxima."""

    def __init__(self, columns: int, device: torch.device, mantissa_bits: int = MANTISSA_BITS):
        self.columns = columns
        self.k = mantissa_bits
        self.per_octave = 1 << mantissa_bits
        self.nbins = (MAX_EXP - MIN_EXP) * self.per_octave
        self.offset = (127 + MIN_EXP) << mantissa_bits
        # channel-major, so one channel's bins are contiguous (cache-friendly updates)
        self.counts = torch.zeros(columns, self.nbins, dtype=torch.int32, device=device)
        self.total = torch.zeros(columns, dtype=torch.float64, device=device)
        self.maximum = torch.zeros(columns, dtype=torch.float32, device=device)
        self.tokens = 0
        channel = torch.arange(columns, device=device, dtype=torch.int32)
        self._addend = channel * self.nbins - self.offset
        self._ones_buf: torch.Tensor | None = None
        if self.nbins * columns >= 2**31:
            raise ValueError(f"{columns} channels are too many for int32 bin indices")

    def add(self, x: torch.Tensor) -> None:
        """x: [tokens, columns] float32 activations (signs are ignored: the histogram is of |x|)."""
        x = x.detach().float().contiguous()
        if _fused_add is not None and x.device.type == "cpu":
            _fused_add(x.numpy(), x.view(torch.int32).numpy(), self.counts.numpy(),
                       self.total.numpy(), self.maximum.numpy(), 23 - self.k, self.offset,
                       self.nbins)
        else:
            self._torch_add(x.abs())
        self.tokens += x.shape[0]

    def _torch_add(self, a: torch.Tensor) -> None:
        # bin index of every value, then channel * nbins + bin, in place
        flat = a.view(torch.int32) >> (23 - self.k)
        flat.clamp_(self.offset, self.offset + self.nbins - 1).add_(self._addend)
        self.counts.reshape(-1).index_add_(0, flat.reshape(-1), self._ones(flat.numel(), a.device))
        self.total += a.sum(dim=0, dtype=torch.float64)
        torch.maximum(self.maximum, a.amax(dim=0), out=self.maximum)

    def _ones(self, n: int, device: torch.device) -> torch.Tensor:
        if self._ones_buf is None or self._ones_buf.numel() < n:
            self._ones_buf = torch.ones(n, dtype=torch.int32, device=device)
        return self._ones_buf[:n]

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper value of every bin (float64, [nbins])."""
        device = self.counts.device
        idx = torch.arange(self.nbins, device=device, dtype=torch.float64)
        octave = torch.floor(idx / self.per_octave)
        frac = (idx - octave * self.per_octave) / self.per_octave
        lower = torch.pow(2.0, octave + MIN_EXP) * (1 + frac)
        upper = torch.pow(2.0, octave + MIN_EXP) * (1 + frac + 1 / self.per_octave)
        lower[0] = 0.0
        upper[-1] = max(float(self.maximum.max()), float(upper[-1]))
        return lower, upper

    def matrix(self) -> torch.Tensor:
        """Counts as [nbins, columns] int64."""
        return self.counts.t().to(torch.int64)

    def quantile_all(self, q: float) -> float:
        """q-quantile of every value seen (all channels), interpolating between order
        statistics like numpy's default 'linear' method."""
        counts = self.matrix().sum(dim=1)
        n = int(counts.sum())
        pos = q * (n - 1)
        lo_rank, hi_rank = math.floor(pos), math.ceil(pos)
        lower, upper = self.edges()
        cum = torch.cumsum(counts, 0)
        values = []
        for rank in (lo_rank, hi_rank):
            b = int(torch.searchsorted(cum, torch.tensor(rank, device=cum.device), right=True))
            before = int(cum[b] - counts[b])
            within = (rank - before + 0.5) / int(counts[b])
            values.append(float(lower[b] + within * (upper[b] - lower[b])))
        return values[0] + (pos - lo_rank) * (values[1] - values[0])

    def count_above(self, threshold: float) -> torch.Tensor:
        """Per channel, how many values exceed `threshold` (float64, fractional within the
        bin that holds the threshold)."""
        counts = self.matrix().double()
        lower, upper = self.edges()
        width = (upper - lower).clamp_min(1e-300)
        share_above = ((upper - threshold) / width).clamp(0, 1)  # 1 for bins above, 0 below
        return (counts * share_above.reshape(-1, 1)).sum(dim=0)

    def top_mean(self, k: int) -> torch.Tensor:
        """Per channel, the mean of its k largest values (k <= tokens)."""
        counts = self.matrix().flip(0).double()  # from the top bin down
        lower, upper = (e.flip(0).reshape(-1, 1) for e in self.edges())
        upper = torch.minimum(upper, self.maximum.double().reshape(1, -1))
        lower = torch.minimum(lower, upper)
        before = torch.cumsum(counts, 0) - counts
        taken = (k - before).clamp(min=0)
        taken = torch.minimum(taken, counts)
        # the `taken` largest of `counts` values spread uniformly over [lower, upper]
        share = torch.where(counts > 0, taken / counts.clamp_min(1), torch.zeros_like(counts))
        mean_taken = upper - share * (upper - lower) / 2
        return (taken * mean_taken).sum(dim=0) / k

    def nbytes(self) -> int:
        return self.counts.numel() * self.counts.element_size()


CHANNEL_BLOCK = 256  # channels per parallel task: their bins (256 x nbins int32) stay in cache

if njit is not None:
    @njit(parallel=True, cache=True, nogil=True)
    def _fused_add(x, bits, counts, total, maximum, shift, offset, nbins):  # pragma: no cover
        """One pass over x: bin counts of |x|, sums and maxima, per channel. Channel blocks run
        in parallel and own their rows of counts, so there are no races."""
        tokens, columns = x.shape
        blocks = (columns + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
        for block in prange(blocks):
            first = block * CHANNEL_BLOCK
            last = min(columns, first + CHANNEL_BLOCK)
            for t in range(tokens):
                for j in range(first, last):
                    b = ((bits[t, j] & 0x7FFFFFFF) >> shift) - offset
                    if b < 0:
                        b = 0
                    elif b >= nbins:
                        b = nbins - 1
                    counts[j, b] += 1
                    a = abs(x[t, j])
                    total[j] += a
                    if a > maximum[j]:
                        maximum[j] = a
else:  # pragma: no cover
    _fused_add = None
