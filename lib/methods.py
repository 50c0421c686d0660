"""The method table: each pruning method is a score function plus the statistic it needs.

Adding a method means writing a score function and one `Method(...)` entry in METHODS;
the layer loop in lib/prune.py serves all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

ScoreFn = Callable[[torch.Tensor, Any, "MethodOptions"], torch.Tensor]


@dataclass(frozen=True)
class MethodOptions:
    """Hyperparameters that score functions may read (filled from the CLI)."""

    activity_quantile: float = 0.6  # q: a channel is active where |x| > the q-quantile of |X|
    spike_top_frac: float = 0.1  # f: spikiness = mean of the top f share of |x_j| / mean |x_j|
    idf_offset: float = 0.0  # added to idf; 1 = sklearn's smooth idf
    idf_power: float = 1.0  # alpha
    spiky_power: float = 1.0  # beta
    selectivity_floor: float = 0.0  # >0: factor / median(factor) never below this
    selectivity_stats: str = "histogram"  # or "exact" (stores activations)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Method:
    name: str
    score: ScoreFn
    statistic: str | None = None  # key of lib.layerwrapper.STATISTICS; None = no calibration
    scope: str = "row"  # "row": compare within output rows (or N:M groups); "matrix": whole matrix
    summary: str = ""
    # MethodOptions fields this method sets when the user leaves the flag unset
    option_defaults: tuple[tuple[str, float], ...] = ()
    # None: zero the masked weights. Else SparseGPT's OBS update of the rest (lib/obs.py), with
    # the mask from `score` chosen "fixed" (once, up front) or "blockwise" (re-chosen per
    # 128-column block or N:M group on the updated weights, `score` getting those columns)
    update: str | None = None


def magnitude_score(weight: torch.Tensor, stat: Any, opts: MethodOptions) -> torch.Tensor:
    return weight.abs()


def wanda_score(weight: torch.Tensor, stat: Any, opts: MethodOptions) -> torch.Tensor:
    return weight.abs() * stat.column_norm().reshape(1, -1)


def obs_saliency(weight: torch.Tensor, cols: Any, opts: MethodOptions) -> torch.Tensor:
    """SparseGPT's w^2 / [H^-1]_jj^2, on a block of columns (see lib.obs.ColumnSlice)."""
    return weight.pow(2) / cols.hinv_diag.reshape(1, -1).pow(2)


def selectivity_factor(sel: Any, opts: MethodOptions, use_idf: bool,
                       use_spikiness: bool) -> torch.Tensor:
    """Per-input-channel multiplier idf^alpha * spikiness^beta, optionally floored."""
    factor = torch.ones_like(sel.norm)
    if use_idf:
        factor = factor * sel.idf(opts.idf_offset).clamp_min(0) ** opts.idf_power
    if use_spikiness:
        factor = factor * sel.spikiness ** opts.spiky_power
    if opts.selectivity_floor > 0:
        # relative to the median channel, so the floor means the same for every layer
        factor = torch.clamp_min(factor / factor.median().clamp_min(1e-30), opts.selectivity_floor)
    return factor


def _selectivity_score(use_idf: bool, use_spikiness: bool) -> ScoreFn:
    def score(weight: torch.Tensor, stat: Any, opts: MethodOptions) -> torch.Tensor:
        sel = stat.selectivity(opts.activity_quantile, opts.spike_top_frac)
        factor = selectivity_factor(sel, opts, use_idf, use_spikiness)
        return weight.abs() * (sel.norm * factor).reshape(1, -1)
    return score


IDF_REMEDY = (("selectivity_floor", 1.0),)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("magnitude", magnitude_score, None, "matrix", "|W|, one threshold per matrix"),
    Method("wanda", wanda_score, "norm", "row", "|W_ij| * ||X_j||, per output row"),
    # idf ~ 0 on the massive-activation channels; measured remedy: floor 1 (SELECTIVITY.md)
    Method("wanda_idf", _selectivity_score(True, False), "selectivity", "row",
           "|W_ij| * ||X_j|| * idf_j^alpha", IDF_REMEDY),
    Method("wanda_spiky", _selectivity_score(False, True), "selectivity", "row",
           "|W_ij| * ||X_j|| * spikiness_j^beta"),
    Method("wanda_select", _selectivity_score(True, True), "selectivity", "row",
           "|W_ij| * ||X_j|| * idf_j^alpha * spikiness_j^beta", IDF_REMEDY),
    Method("sparsegpt", obs_saliency, "hessian", "block",
           "w^2 / [H^-1]_jj^2 per 128-column block, OBS update", update="blockwise"),
    Method("ablate_mag_seq", magnitude_score, "hessian", "matrix",
           "magnitude mask chosen once, OBS update", update="fixed"),
    Method("ablate_wanda_seq", wanda_score, "hessian", "row",
           "wanda mask chosen once, OBS update", update="fixed"),
    Method("ablate_mag_iter", magnitude_score, "hessian", "block",
           "magnitude mask per 128-column block on updated weights, OBS update",
           update="blockwise"),
    Method("ablate_wanda_iter", wanda_score, "hessian", "block",
           "wanda mask per 128-column block on updated weights, OBS update",
           update="blockwise"),
)}

DENSE = "dense"


def method_names() -> list[str]:
    return [DENSE, *METHODS]
