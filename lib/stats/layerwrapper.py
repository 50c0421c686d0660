"""Statistics gathered on the inputs of pruned linear layers during calibration.

Each statistic class takes the input activations of one linear (any leading shape, last
dimension = input channels) batch by batch through `add_batch`. Linears that receive the
same tensor (q/k/v, gate/up) share one statistic object: see InputStatsCollector.

A class says what it offers through its public methods (a score names the ones it calls, and
the method table checks them when it is built), which options it reads (`options`), whether a
run that saves selectivity statistics may gather SelectivityWrappedGPT in its place
(`saves_selectivity`), and how to build one for a run's settings (`factory`). torch is imported where it is used, so that the
method table can be read without it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lib.run.options import Option, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn


class WrappedGPT:
    """Wanda's statistic: squared column norms of the input, as a running mean over samples.

    `scaler_row[j]` is the mean over calibration sequences of sum_t X[t, j]^2, accumulated in
    float32 exactly like the Wanda repository, so `column_norm()` ranks weights identically.
    """

    options: tuple[Option, ...] = ()
    # SelectivityWrappedGPT offers all this class does, so --save_stats may gather it instead
    saves_selectivity = True

    def __init__(self, columns: int, device: torch.device):
        import torch

        self.columns = columns
        self.scaler_row = torch.zeros(columns, dtype=torch.float32, device=device)
        self.nsamples = 0
        self.tokens = 0

    @classmethod
    def factory(cls, settings: Settings) -> Callable[[int, torch.device], WrappedGPT]:
        return cls

    def add_batch(self, inp: torch.Tensor) -> None:
        batch = inp.shape[0] if inp.dim() == 3 else 1
        x = inp.reshape(-1, inp.shape[-1]).float()
        self.scaler_row *= self.nsamples / (self.nsamples + batch)
        self.nsamples += batch
        self.tokens += x.shape[0]
        self.scaler_row += x.pow(2).sum(dim=0) / self.nsamples

    def column_norm(self) -> torch.Tensor:
        """sqrt of the per-sample mean of squared norms: Wanda's ||X_j||."""
        return self.scaler_row.sqrt()

    def total_norm(self) -> torch.Tensor:
        """||X[:, j]||_2 over every calibration token."""
        return (self.scaler_row * self.nsamples).sqrt()


@dataclass(frozen=True)
class Selectivity:
    """Per-input-channel statistics of one layer input (see SELECTIVITY.md for definitions)."""

    norm: torch.Tensor  # ||X[:, j]||_2 over all tokens
    active_frac: torch.Tensor  # share of tokens with |x| > threshold
    spikiness: torch.Tensor  # mean of the top f share of |x| / mean |x|
    threshold: float  # q-quantile of all |x| entries of this input
    tokens: int

    def idf(self, offset: float) -> torch.Tensor:
        """log((T + 1) / (n_j + 1)) + offset: Laplace-smoothed inverse document frequency."""
        n = self.active_frac * self.tokens
        return ((self.tokens + 1) / (n + 1)).log() + offset


def _spikiness(top_mean: torch.Tensor, total: torch.Tensor, tokens: int) -> torch.Tensor:
    mean = total / tokens
    return (top_mean / mean.clamp_min(1e-300)).where(mean > 0, 1.0)


SELECTIVITY_OPTIONS = (
    Option("activity_quantile", 0.6, "q: a channel is active on a token where |x| exceeds the "
           "q-quantile of all |x| of the layer input", valid="in (0, 1)",
           check=lambda v: 0 < v < 1),
    Option("spike_top_frac", 0.1, "f: spikiness = mean of a channel's top f share of |x| / its "
           "mean |x|", valid="in (0, 1]", check=lambda v: 0 < v <= 1),
    Option("idf_offset", 0.0, "added to idf = log((T+1)/(n+1)); 1 = smooth idf", valid=">= 0",
           check=lambda v: v >= 0),
    Option("selectivity_stats", "histogram", "histogram: bounded memory; exact: stores the "
           "activations (validation, small models)", type=str,
           choices=("histogram", "exact")),
    # 4: the selectivity methods prune within 1.10x of wanda's time at 16 x 512, 32 x 512 and
    # 4 x 2048 tokens, and perplexity stays within seed noise (SELECTIVITY.md, "Cost, measured")
    Option("selectivity_sample", 4, "the histogram counts every s-th token of each calibration "
           "batch (the offset rotates from batch to batch); 1 = every token. The norm always "
           "uses every token", type=int, valid=">= 1", check=lambda v: v >= 1),
)


class _SelectivityBase(WrappedGPT):
    """Computes Selectivity once per (quantile, top_frac): q/k/v share one statistic object."""

    options = SELECTIVITY_OPTIONS

    def __init__(self, columns: int, device: torch.device):
        super().__init__(columns, device)
        self._cache: dict[tuple[float, float], Selectivity] = {}

    @classmethod
    def factory(cls, settings: Settings) -> Callable[[int, torch.device], WrappedGPT]:
        if settings.selectivity_stats == "exact":
            return ExactSelectivityWrappedGPT
        return functools.partial(SelectivityWrappedGPT, quantile=settings.activity_quantile,
                                 sample=settings.selectivity_sample)

    def add_batch(self, inp: torch.Tensor) -> None:
        super().add_batch(inp)
        self._cache.clear()

    def selectivity(self, quantile: float, top_frac: float) -> Selectivity:
        key = (quantile, top_frac)
        if key not in self._cache:
            self._cache[key] = self._compute(quantile, top_frac)
        return self._cache[key]

    def _compute(self, quantile: float, top_frac: float) -> Selectivity:
        raise NotImplementedError

    def export(self, settings: Settings) -> dict[str, torch.Tensor]:
        """What --save_stats writes for one linear (float32, on the CPU)."""
        import torch

        sel = self.selectivity(settings.activity_quantile, settings.spike_top_frac)
        f32 = dict(dtype=torch.float32, device="cpu")
        return {
            "norm": sel.norm.to(**f32).clone(),
            "active_frac": sel.active_frac.to(**f32).clone(),
            "idf": sel.idf(settings.idf_offset).to(**f32).clone(),
            "spikiness": sel.spikiness.to(**f32).clone(),
            "threshold": torch.tensor(sel.threshold, **f32),
            "tokens": torch.tensor(float(sel.tokens), **f32),
        }


# values (tokens x channels, float32) buffered before a histogram update: 4 MB, a small share of
# any model's memory, and 700-1800 sampled tokens per update on SmolLM2's inputs
PENDING_VALUES = 1 << 20


class SelectivityWrappedGPT(_SelectivityBase):
    """Wanda's norm plus activity and spikiness of every input channel, in one pass and in
    memory independent of the number of tokens (a per-channel log histogram of |x|).

    The histogram sees every `sample`-th token of each batch, starting at the batch's index
    modulo `sample`: a rotating offset, so that no position (the first token's massive
    activations, above all) is over- or under-represented. Activity and spikiness are shares and
    ratios within those tokens; the norm and the token count T of idf use every token."""

    def __init__(self, columns: int, device: torch.device, quantile: float | None = None,
                 sample: int = 1):
        from lib.stats.loghist import LogHistogram

        super().__init__(columns, device)
        # `quantile`: the activity quantile the run will ask for, to zoom in on its threshold
        self.hist = LogHistogram(columns, device, zoom_quantile=quantile)
        self.sample = sample
        self.batches = 0
        self._pending: list[torch.Tensor] = []  # sampled tokens not yet in the histogram
        self._pending_values = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        import torch

        super().add_batch(inp)
        x = inp.reshape(-1, inp.shape[-1])[self.batches % self.sample::self.sample]
        self.batches += 1
        if x.shape[0]:
            # a copy: the caller reuses its buffers; float32, as the histogram reads it
            self._pending.append(x.detach().to(torch.float32, copy=True))
            self._pending_values += x.numel()
            if self._pending_values >= PENDING_VALUES:
                self._flush()

    def _flush(self) -> None:
        """Count the buffered tokens: one histogram update per ~PENDING_VALUES values, not per
        batch, so that the tables (which the forward pass evicts from the caches between
        batches) are brought back once for many tokens."""
        if self._pending:
            import torch

            self.hist.add(torch.cat(self._pending) if len(self._pending) > 1 else
                          self._pending[0])
            self._pending, self._pending_values = [], 0

    def _compute(self, quantile: float, top_frac: float) -> Selectivity:
        self._flush()
        seen = self.hist.tokens
        threshold = self.hist.quantile_all(quantile)
        active = self.hist.count_above(threshold) / seen
        top = self.hist.top_mean(math.ceil(top_frac * seen))
        return Selectivity(self.total_norm(), active.float(),
                           _spikiness(top, self.hist.total, seen).float(), threshold, self.tokens)


class ExactSelectivityWrappedGPT(_SelectivityBase):
    """The same statistics computed exactly from stored activations (validation, small models:
    memory grows with tokens x channels)."""

    def __init__(self, columns: int, device: torch.device):
        super().__init__(columns, device)
        self.chunks: list[torch.Tensor] = []

    def add_batch(self, inp: torch.Tensor) -> None:
        super().add_batch(inp)
        self.chunks.append(inp.reshape(-1, inp.shape[-1]).float().abs())

    def _compute(self, quantile: float, top_frac: float) -> Selectivity:
        import torch

        from lib.stats.loghist import exact_quantile

        a = torch.cat(self.chunks)
        tokens = a.shape[0]
        threshold = exact_quantile(a.reshape(-1), quantile)
        active = (a > threshold).sum(dim=0).double() / tokens
        k = math.ceil(top_frac * tokens)
        top = torch.topk(a, k, dim=0).values.double().mean(dim=0)
        spiky = _spikiness(top, a.double().sum(dim=0), tokens)
        return Selectivity(self.total_norm(), active.float(), spiky.float(), threshold, tokens)


class HessianWrappedGPT(WrappedGPT):
    """Wanda's norm plus SparseGPT's Hessian H = (2/n) * sum over tokens of x x^T, n = the
    number of calibration sequences, kept as a float32 running mean (no stored activations).
    The first inverse_cholesky() turns H into the Cholesky factor of its damped inverse in
    place of H (q/k/v share one object, so they factor once); `dead` keeps H's zero-diagonal
    inputs."""

    saves_selectivity = False  # --save_stats is for the norm-based methods

    def __init__(self, columns: int, device: torch.device):
        import torch

        super().__init__(columns, device)
        self.hessian: torch.Tensor | None = torch.zeros(columns, columns, dtype=torch.float32,
                                                        device=device)
        self.dead: torch.Tensor | None = None
        self._hinv: torch.Tensor | None = None

    def add_batch(self, inp: torch.Tensor) -> None:
        if self.hessian is None:
            raise RuntimeError("add_batch after inverse_cholesky: the Hessian was consumed")
        batch = inp.shape[0] if inp.dim() == 3 else 1
        x = inp.reshape(-1, inp.shape[-1]).float()
        seen = self.nsamples + batch
        self.hessian *= self.nsamples / seen
        x = x * math.sqrt(2 / seen)
        self.hessian.addmm_(x.t(), x)
        super().add_batch(inp)

    def inverse_cholesky(self, name: str = "") -> torch.Tensor:
        from lib.stats.hessian import dead_inputs, inverse_cholesky

        if self._hinv is None:
            self.dead = dead_inputs(self.hessian)
            # H is not needed once factored: let the factorisation work in its memory
            self._hinv = inverse_cholesky(self.hessian, name=name, overwrite=True)
            self.hessian = None
        return self._hinv


@dataclass(frozen=True)
class ColumnSlice:
    """What a blockwise score (lib/pruning/obs.py) sees of the statistic while the OBS update walks the
    columns: the same columns as the weights it scores, on weights already updated. It offers
    Wanda's norm and SparseGPT's diagonal of the inverse-Hessian factor, nothing else: a score
    that needs more (the selectivity statistics) cannot run blockwise, which the method table
    checks when it is built."""

    stat: WrappedGPT
    start: int
    stop: int
    _hinv_diag: torch.Tensor

    def column_norm(self) -> torch.Tensor:
        return self.stat.column_norm()[self.start:self.stop]

    def hinv_diag(self) -> torch.Tensor:
        """Diagonal of the upper Cholesky factor of H^-1 on these columns."""
        return self._hinv_diag


class InputStatsCollector:
    """Feeds the inputs of a block's pruned matrices to statistic objects, one per matrix.

    Linears get forward hooks; Linears called on the very same tensor object within one forward
    share a statistic, so q/k/v (and gate/up) gather it once. Fused experts modules run through
    an ExpertsTap (lib/stats/experts_tap.py), which feeds each expert's matrices from the tokens routed to
    it (every token with `moe_calibration="all"`). Call `end_sample()` after each sample's forward.
    """

    def __init__(self, parts, factory: Callable[[int, torch.device], object],
                 moe_calibration: str = "routed"):
        from lib.stats.experts_tap import ExpertsTap

        self.factory = factory
        self.stats: dict[str, object] = {}
        self._recent: list[tuple[torch.Tensor, object]] = []
        self._linears_on = True
        self._handles = [lin.register_forward_hook(self._hook(name))
                         for name, lin in parts.linears.items()]
        self.taps = [ExpertsTap(name, module, self._feed, moe_calibration)
                     for name, module in parts.experts.items()]

    def _stat(self, name: str, x: torch.Tensor):
        stat = self.stats.get(name)
        if stat is None:
            stat = self.stats[name] = self.factory(x.shape[-1], x.device)
        return stat

    def _feed(self, name: str, x: torch.Tensor) -> None:
        self._stat(name, x).add_batch(x.detach())

    def _hook(self, name: str):
        def gather(module: nn.Module, args: tuple, output) -> None:
            if not self._linears_on:
                return
            x = args[0]
            for seen, stat in self._recent:
                if seen is x:
                    self.stats.setdefault(name, stat)
                    return
            stat = self._stat(name, x)
            stat.add_batch(x.detach())
            self._recent.append((x, stat))
        return gather

    def missing_experts(self) -> bool:
        """Whether an expert has no statistic yet (it received no token, and was not fed every
        token already); if so, the next pass feeds those experts every token and feeds nothing
        else (a statistics-only fallback pass)."""
        missing = {id(tap): [e for e in tap.missing()
                             if f"{tap.name}.{tap.up}.{e}" not in self.stats]
                   for tap in self.taps}
        if not any(missing.values()):
            return False
        self._linears_on = False
        for tap in self.taps:
            tap.fallback = set(missing[id(tap)])
        return True

    def expert_tokens(self) -> list[int]:
        """Tokens routed to each expert of the block, over all experts modules."""
        return [int(n) for tap in self.taps for n in tap.routed_tokens]

    def end_sample(self) -> None:
        self._recent.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for tap in self.taps:
            tap.remove()
        self._recent.clear()
