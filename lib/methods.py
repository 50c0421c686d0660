"""The method table: each pruning method is a score function plus the statistic it needs.

Adding a method means writing a score function and one `Method(...)` entry in METHODS;
the layer loop in lib/prune.py serves all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

ScoreFn = Callable[[torch.Tensor, Any, "MethodOptions"], torch.Tensor]


@dataclass(frozen=True)
class MethodOptions:
    """Hyperparameters that score functions may read (filled from the CLI)."""

    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    name: str
    score: ScoreFn
    statistic: str | None = None  # key of lib.layerwrapper.STATISTICS; None = no calibration
    scope: str = "row"  # "row": compare within output rows (or N:M groups); "matrix": whole matrix
    summary: str = ""


def magnitude_score(weight: torch.Tensor, stat: Any, opts: MethodOptions) -> torch.Tensor:
    return weight.abs()


def wanda_score(weight: torch.Tensor, stat: Any, opts: MethodOptions) -> torch.Tensor:
    return weight.abs() * stat.column_norm().reshape(1, -1)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("magnitude", magnitude_score, None, "matrix", "|W|, one threshold per matrix"),
    Method("wanda", wanda_score, "norm", "row", "|W_ij| * ||X_j||, per output row"),
)}

DENSE = "dense"


def method_names() -> list[str]:
    return [DENSE, *METHODS]
