"""The inverse Hessian SparseGPT's update walks: the upper Cholesky factor of (H + damp I)^-1, with
damping that grows until the factorisation succeeds, and the inputs that never fired."""
from __future__ import annotations

import logging

import torch

from lib.run.errors import UserError

log = logging.getLogger(__name__)

PERCDAMP = 0.01  # damping added to diag(H), relative to its mean
DAMP_GROWTH = 10.0  # each failed Cholesky retries with this many times more damping
DAMP_RETRIES = 4


class HessianError(UserError):
    """H had inf/NaN entries, or stayed not positive definite at the largest damping tried."""


def dead_inputs(hessian: torch.Tensor) -> torch.Tensor:
    """Inputs that never fired during calibration (diag H = 0)."""
    return torch.diagonal(hessian) == 0


def inverse_cholesky(hessian: torch.Tensor, percdamp: float = PERCDAMP,
                     name: str = "", overwrite: bool = False) -> torch.Tensor:
    """Upper Cholesky factor U of (H + damp I)^-1 (so H^-1 = U^T U), float32. Dead inputs
    get H_ii = 1 (their weights are zeroed by the caller: they carry nothing).

    If H + damp I is not positive definite (too few calibration tokens, duplicated inputs),
    the damping grows by DAMP_GROWTH and the failure is logged, up to DAMP_RETRIES times.
    overwrite=True lets a float32 H be used as the work matrix (its contents are lost): the
    peak is then about four C x C matrices, H included (measured; six when every step
    copied), and for a 28672-wide down_proj each is 3.3 GB."""
    label = name or "layer"
    if not bool(torch.isfinite(hessian).all()):
        raise HessianError(f"{label}: the Hessian has inf/NaN entries (the calibration "
                           "activations overflowed); rerun with --dtype bfloat16 or float32")
    work = hessian if overwrite and hessian.dtype == torch.float32 else hessian.float().clone()
    diag = torch.diagonal(work)
    diag[dead_inputs(work)] = 1
    mean_diag = float(diag.mean())
    damp, added = percdamp, 0.0
    for attempt in range(DAMP_RETRIES + 1):
        # only the diagonal changes between attempts, so one work matrix serves them all
        diag.add_((damp - added) * mean_diag)
        added = damp
        upper = _upper_factor_of_inverse(work)
        if upper is not None:
            return upper
        if attempt < DAMP_RETRIES:
            log.warning("%s: Hessian not positive definite with damping %.3g x mean(diag H); "
                        "retrying with %.3g", label, damp, damp * DAMP_GROWTH)
            damp *= DAMP_GROWTH
    raise HessianError(f"{label}: Hessian not positive definite even with damping "
                       f"{damp:g} x mean(diag H); use more calibration samples")


def _upper_factor_of_inverse(spd: torch.Tensor) -> torch.Tensor | None:
    """U with spd^-1 = U^T U, or None when either factorisation fails. `spd` is unchanged,
    and each intermediate is dropped as soon as the next exists."""
    factor, info = torch.linalg.cholesky_ex(spd)
    if int(info) != 0:
        return None
    inverse = torch.cholesky_inverse(factor)
    del factor
    upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
    return upper if int(info) == 0 else None
