"""The method table: each pruning method is a score, the statistic it needs, its options and,
for the weight-update methods, the update rule.

Adding a method means writing a score function and one `Method(...)` entry in METHODS, with the
options it reads; the CLI flags, sweep keys, validation and results records derive from that
entry, and the layer loop in lib/pruning/prune.py serves it. The table checks itself when built: a
score may only call what its statistic (or, for blockwise updates, its ColumnSlice)
offers. A method owns its rules (`Method.validate`): the options it reads, and which flags and
sparsities it accepts. `DENSE` is the method that prunes nothing. Importable without torch (scores
use tensor methods).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lib.pruning.sparsity import Sparsity
from lib.run.errors import UserError
from lib.run.options import Option, Settings, unique
from lib.stats.layerwrapper import (
    ColumnSlice,
    HessianWrappedGPT,
    SelectivityWrappedGPT,
    WrappedGPT,
)

if TYPE_CHECKING:
    import torch

ScoreFn = Callable[["torch.Tensor", Any, Settings], "torch.Tensor"]

BASELINE = "wanda"  # the method summaries and benchmarks compare every other method against
OBS_BLOCK_SIZE = 128  # columns per OBS block (SparseGPT's lazy batch); lib/pruning/obs.py


@dataclass(frozen=True)
class Score:
    """A score function and the attributes of the statistic it calls (checked at table build)."""

    fn: ScoreFn
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    name: str
    score: Score | None  # None: prunes nothing (DENSE)
    statistic: type | None = None  # a lib.stats.layerwrapper class; None = no calibration
    scope: str = "row"  # "row": within output rows (or N:M groups); "matrix": whole matrix;
    #                     "block": per OBS_BLOCK_SIZE columns on updated weights (blockwise)
    summary: str = ""
    score_options: tuple[Option, ...] = ()  # besides the statistic's own options
    # options whose default differs for this method, e.g. (("selectivity_floor", 1.0),)
    defaults: tuple[tuple[str, Any], ...] = ()
    # None: zero the masked weights. Else SparseGPT's OBS update of the rest (lib/pruning/obs.py),
    # with the mask from `score` chosen "fixed" (once, up front) or "blockwise" (re-chosen per
    # OBS block or N:M group on the updated weights, `score` getting a ColumnSlice)
    update: str | None = None
    scope_option: str | None = None  # an option that chooses the scope instead (e.g. RIA's)
    # the declared options its score and statistic read, which a user may set (None: all);
    # the others keep their defaults (recorded, since the statistic is built with them)
    reads: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.score is None:
            return
        if self.update not in (None, "fixed", "blockwise"):
            raise ValueError(f"{self.name}: unknown update rule {self.update!r}")
        if (self.scope == "block") != (self.update == "blockwise"):
            raise ValueError(f"{self.name}: scope 'block' goes with the blockwise update only")
        target = ColumnSlice if self.update == "blockwise" else self.statistic
        missing = [n for n in self.score.needs if target is None or not hasattr(target, n)]
        if missing:
            where = target.__name__ if target is not None else "no statistic"
            raise TypeError(f"{self.name}: its score calls {', '.join(missing)}, which {where} "
                            f"does not offer ({self.update or 'zeroing'} mode)")
        names = [o.name for o in self.options]
        unread = set(self.reads or ()) - {o.name for o in self.declared_options}
        if unread:
            raise ValueError(f"{self.name}: reads options it does not declare: {sorted(unread)}")
        if self.scope_option is not None and self.scope_option not in names:
            raise ValueError(f"{self.name}: scope_option {self.scope_option} is not an option")
        unknown = [k for k, _ in self.defaults if k not in names]
        if unknown:
            raise ValueError(f"{self.name}: defaults for options it has not: {unknown}")

    @property
    def prunes(self) -> bool:
        return self.score is not None

    @property
    def declared_options(self) -> tuple[Option, ...]:
        """Every option of its statistic and score: the values a run uses and records."""
        own = self.statistic.options if self.statistic is not None else ()
        return tuple(unique((*own, *self.score_options)))

    @property
    def options(self) -> tuple[Option, ...]:
        """The options a user may set: flags and sweep keys."""
        return tuple(o for o in self.declared_options if self.reads is None or o.name in self.reads)

    def scope_for(self, settings: Settings) -> str:
        return settings[self.scope_option] if self.scope_option else self.scope

    def default(self, option: Option) -> Any:
        return dict(self.defaults).get(option.name, option.default)

    def settings(self, given: dict[str, Any], where: str = "") -> Settings:
        """This method's option values: `given` where it may be set and not None, else its
        defaults; validated."""
        values = Settings()
        settable = set(self.options)
        for option in self.declared_options:
            value = given.get(option.name) if option in settable else None
            values[option.name] = self.default(option) if value is None else value
            option.validate(values[option.name], where)
        return values

    def statistic_for(self, save_stats: bool) -> type | None:
        """What a run gathers: the method's statistic or, to save the selectivity statistics,
        SelectivityWrappedGPT (it offers all a norm-based statistic does); None when neither."""
        if not save_stats:
            return self.statistic
        saves = self.statistic is not None and self.statistic.saves_selectivity
        return SelectivityWrappedGPT if saves else None

    def validate(self, given: dict[str, Any], sparsity: Sparsity, save_stats: bool = False
                 ) -> Settings:
        """A run's settings for this method, refusing in one line what does not apply to it:
        an option of another method (`given`: every method option, None when not given), a
        sparsity it cannot use, --use_variant outside the zeroing row-wise methods, and
        --save_stats without a statistic that can export the selectivity statistics."""
        saver = self.statistic_for(True) if save_stats else None
        settable = {o.name for o in (*self.options, *(saver.options if saver else ()))}
        for name, value in given.items():
            if value is not None and name not in settable:
                readers = [m.name for m in METHODS.values() if name in {o.name for o in m.options}]
                raise UserError(f"--{name} is not an option of {self.name} (read by "
                                f"{', '.join(readers)}); drop it or choose one of those methods")
        if not self.prunes and sparsity.ratio > 0:
            raise UserError("--sparsity_ratio/--sparsity_type need a --prune_method "
                            f"({', '.join(METHODS)})")
        if self.prunes and sparsity.ratio == 0:
            raise UserError(f"--prune_method {self.name} at sparsity 0 prunes nothing; give "
                            "--sparsity_ratio (e.g. 0.5) or --sparsity_type 2:4, or drop "
                            "--prune_method to evaluate the dense model")
        settings = self.settings(given)
        if sparsity.variant and (not self.prunes or self.scope_for(settings) != "row"
                                 or self.update):
            raise UserError("--use_variant is for the zeroing row-wise methods (wanda and the "
                            f"selectivity methods); drop it for {self.name}")
        if save_stats:
            if saver is None:
                raise UserError("--save_stats needs a pruning method that gathers statistics "
                                "(wanda or a selectivity method) and a sparsity above 0")
            # the saved statistics read the selectivity options even when the score does not
            extra = {o.name: given[o.name] if given.get(o.name) is not None else o.default
                     for o in saver.options if o.name not in settings}
            settings = Settings({**settings, **extra})
        return settings


def magnitude_score(weight: torch.Tensor, stat: Any, opts: Settings) -> torch.Tensor:
    return weight.abs()


def wanda_score(weight: torch.Tensor, stat: Any, opts: Settings) -> torch.Tensor:
    return weight.abs() * stat.column_norm().reshape(1, -1)


def obs_saliency(weight: torch.Tensor, cols: Any, opts: Settings) -> torch.Tensor:
    """SparseGPT's w^2 / [H^-1]_jj^2, on a block of columns (see lib.stats.layerwrapper.ColumnSlice)."""
    return weight.pow(2) / cols.hinv_diag().reshape(1, -1).pow(2)


SELECTIVITY_SCORE_OPTIONS = (
    Option("idf_power", 1.0, "alpha: idf exponent", valid=">= 0", check=lambda v: v >= 0),
    Option("spiky_power", 1.0, "beta: spikiness exponent", valid=">= 0", check=lambda v: v >= 0),
    Option("selectivity_floor", 0.0, ">0: the selectivity factor, divided by its median over "
           "channels, never goes below this; 0 = the faithful formula", valid=">= 0",
           check=lambda v: v >= 0),
)


def selectivity_factor(sel: Any, opts: Settings, use_idf: bool,
                       use_spikiness: bool) -> torch.Tensor:
    """Per-input-channel multiplier idf^alpha * spikiness^beta, optionally floored."""
    factor = sel.norm.new_ones(sel.norm.shape)
    if use_idf:
        factor = factor * sel.idf(opts.idf_offset).clamp_min(0) ** opts.idf_power
    if use_spikiness:
        factor = factor * sel.spikiness ** opts.spiky_power
    if opts.selectivity_floor > 0:
        # relative to the median channel, so the floor means the same for every layer
        factor = (factor / factor.median().clamp_min(1e-30)).clamp_min(opts.selectivity_floor)
    return factor


# what the histogram is gathered with, and the floor: read by every selectivity method
SELECTIVITY_COMMON = ("selectivity_stats", "selectivity_sample", "selectivity_floor")
READS_IDF = ("activity_quantile", "idf_offset", "idf_power")
READS_SPIKINESS = ("spike_top_frac", "spiky_power")


def _selectivity_score(use_idf: bool, use_spikiness: bool) -> Score:
    def score(weight: torch.Tensor, stat: Any, opts: Settings) -> torch.Tensor:
        sel = stat.selectivity(opts.activity_quantile, opts.spike_top_frac)
        factor = selectivity_factor(sel, opts, use_idf, use_spikiness)
        return weight.abs() * (sel.norm * factor).reshape(1, -1)
    return Score(score, ("selectivity",))


RIA_OPTIONS = (
    Option("ria_power", 0.5, "a: exponent of ||X_j|| in RIA's score", valid=">= 0",
           check=lambda v: v >= 0),
    Option("ria_compare", "matrix", "unstructured: compare scores within the whole matrix (RIA's "
           "default) or within each output row", type=str, choices=("matrix", "row")),
)


def ria_score(weight: torch.Tensor, stat: Any, opts: Settings) -> torch.Tensor:
    """RIA (Zhang et al. 2024): relative importance |W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|
    (the first sum over input j's column, all outputs; the second over output i's row, all
    inputs), times ||X_j||^a. A zero row or column adds nothing (not a division by zero)."""
    a = weight.abs()
    column = a.sum(dim=0, keepdim=True)
    row = a.sum(dim=1, keepdim=True)
    relative = a / column.where(column > 0, 1.0) + a / row.where(row > 0, 1.0)
    return relative * stat.column_norm().reshape(1, -1) ** opts.ria_power


MAGNITUDE = Score(magnitude_score)
WANDA = Score(wanda_score, ("column_norm",))
# idf ~ 0 on the massive-activation channels; measured remedy: floor 1 (SELECTIVITY.md)
IDF_REMEDY = (("selectivity_floor", 1.0),)
SELECTIVITY = dict(statistic=SelectivityWrappedGPT, score_options=SELECTIVITY_SCORE_OPTIONS)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("magnitude", MAGNITUDE, None, "matrix", "|W|, one threshold per matrix"),
    Method("wanda", WANDA, WrappedGPT, "row", "|W_ij| * ||X_j||, per output row"),
    Method("wanda_idf", _selectivity_score(True, False), scope="row",
           summary="|W_ij| * ||X_j|| * idf_j^alpha", defaults=IDF_REMEDY,
           reads=SELECTIVITY_COMMON + READS_IDF, **SELECTIVITY),
    Method("wanda_spiky", _selectivity_score(False, True), scope="row",
           summary="|W_ij| * ||X_j|| * spikiness_j^beta",
           reads=SELECTIVITY_COMMON + READS_SPIKINESS, **SELECTIVITY),
    Method("wanda_select", _selectivity_score(True, True), scope="row",
           summary="|W_ij| * ||X_j|| * idf_j^alpha * spikiness_j^beta", defaults=IDF_REMEDY,
           reads=SELECTIVITY_COMMON + READS_IDF + READS_SPIKINESS, **SELECTIVITY),
    Method("ria", Score(ria_score, ("column_norm",)), WrappedGPT, "matrix",
           "(|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) * ||X_j||^a (RIA)",
           score_options=RIA_OPTIONS, scope_option="ria_compare"),
    Method("sparsegpt", Score(obs_saliency, ("hinv_diag",)), HessianWrappedGPT, "block",
           f"w^2 / [H^-1]_jj^2 per {OBS_BLOCK_SIZE}-column block, OBS update", update="blockwise"),
    Method("ablate_mag_seq", MAGNITUDE, HessianWrappedGPT, "matrix",
           "magnitude mask chosen once, OBS update", update="fixed"),
    Method("ablate_wanda_seq", WANDA, HessianWrappedGPT, "row",
           "wanda mask chosen once, OBS update", update="fixed"),
    Method("ablate_mag_iter", MAGNITUDE, HessianWrappedGPT, "block",
           f"magnitude mask per {OBS_BLOCK_SIZE}-column block on updated weights, OBS update",
           update="blockwise"),
    Method("ablate_wanda_iter", WANDA, HessianWrappedGPT, "block",
           f"wanda mask per {OBS_BLOCK_SIZE}-column block on updated weights, OBS update",
           update="blockwise"),
)}

DENSE = Method("dense", None, summary="no pruning: evaluate the model as it is")


def method_named(name: str | None) -> Method:
    """The method --prune_method names (none: DENSE); one line for an unknown name."""
    if name is None or name == DENSE.name:
        return DENSE
    if name not in METHODS:
        raise UserError(f"unknown --prune_method {name}; choose from "
                        f"{', '.join([DENSE.name, *METHODS])}")
    return METHODS[name]


def all_options() -> list[Option]:
    """Every method option once, in table order: the CLI's flags."""
    return unique(o for m in METHODS.values() for o in m.options)


def methods_with(option: Option) -> list[Method]:
    return [m for m in METHODS.values() if option in m.options]
