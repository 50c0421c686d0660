"""Statistics gathered on the inputs of pruned linear layers during calibration.

Each statistic class takes the input activations of one linear (any leading shape, last
dimension = input channels) batch by batch through `add_batch`. Linears that receive the
same tensor (q/k/v, gate/up) share one statistic object: see InputStatsCollector.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class WrappedGPT:
    """Wanda's statistic: squared column norms of the input, as a running mean over samples.

    `scaler_row[j]` is the mean over calibration sequences of sum_t X[t, j]^2, accumulated in
    float32 exactly like the Wanda repository, so `column_norm()` ranks weights identically.
    """

    def __init__(self, columns: int, device: torch.device):
        self.columns = columns
        self.scaler_row = torch.zeros(columns, dtype=torch.float32, device=device)
        self.nsamples = 0
        self.tokens = 0

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


STATISTICS: dict[str, Callable[[int, torch.device], object]] = {
    "norm": WrappedGPT,
}


class InputStatsCollector:
    """Forward hooks on a block's linears that feed their inputs to statistic objects.

    Linears called on the very same tensor object within one forward share a statistic, so
    q/k/v (and gate/up) gather it once. Call `end_sample()` after each sample's forward.
    """

    def __init__(self, linears: dict[str, nn.Linear], factory: Callable[[int, torch.device], object]):
        self.factory = factory
        self.stats: dict[str, object] = {}
        self._recent: list[tuple[torch.Tensor, object]] = []
        self._handles = [lin.register_forward_hook(self._hook(name)) for name, lin in linears.items()]

    def _hook(self, name: str):
        def gather(module: nn.Module, args: tuple, output) -> None:
            x = args[0]
            for seen, stat in self._recent:
                if seen is x:
                    self.stats.setdefault(name, stat)
                    return
            stat = self.stats.get(name)
            if stat is None:
                stat = self.stats[name] = self.factory(x.shape[-1], x.device)
            stat.add_batch(x.detach())
            self._recent.append((x, stat))
        return gather

    def end_sample(self) -> None:
        self._recent.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._recent.clear()
