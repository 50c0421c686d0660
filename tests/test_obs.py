"""SparseGPT's OBS update and Wanda's ablations, against independent computations."""
from __future__ import annotations

import logging

import pytest
import torch
from tiny_models import option_settings

from lib.pruning import masks, obs
from lib.pruning.methods import METHODS
from lib.pruning.sparsity import parse_sparsity
from lib.run.errors import UserError
from lib.stats import hessian as hess
from lib.stats.layerwrapper import HessianWrappedGPT


def correlated_inputs(tokens: int, cols: int, seed: int) -> torch.Tensor:
    """[tokens, cols] inputs with strongly correlated channels of unequal scale, the regime
    in which updating the remaining weights pays off."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(cols, cols, generator=gen) / cols ** 0.5 + torch.eye(cols)
    scale = torch.exp(torch.randn(cols, generator=gen))
    return (torch.randn(tokens, cols, generator=gen) @ mixing) * scale


def gathered(x: torch.Tensor, samples: int = 8) -> HessianWrappedGPT:
    stat = HessianWrappedGPT(x.shape[1], x.device)
    for chunk in x.chunk(samples):
        stat.add_batch(chunk.unsqueeze(0))
    return stat


def pruned(method: str, weight: torch.Tensor, stat, kind: str) -> torch.Tensor:
    m = METHODS[method]
    sparsity = parse_sparsity(kind, 0.5 if kind == "unstructured" else 0, False)
    if m.update is None:
        w = weight.clone()
        w[sparsity.mask(m.score.fn(w, stat, option_settings()), m.scope)] = 0
        return w
    return obs.prune_with_obs(weight, stat, m.score.fn, m.update, m.scope, sparsity,
                              option_settings())


def test_hessian_is_the_running_mean_of_two_x_xt():
    x = correlated_inputs(96, 12, seed=1)
    stat = HessianWrappedGPT(12, x.device)
    stat.add_batch(x[:32].reshape(2, 16, 12))  # a batch of two sequences
    stat.add_batch(x[32:].reshape(4, 16, 12))
    direct = 2 / 6 * sum(torch.outer(row, row) for row in x.double())
    assert torch.allclose(stat.hessian.double(), direct, rtol=1e-5, atol=1e-6)
    assert torch.allclose(stat.column_norm() ** 2 * 6, (x ** 2).sum(0), rtol=1e-5)


@pytest.mark.parametrize("kind", ["unstructured", "2:4", "4:8"])
def test_sparsegpt_reconstructs_better_than_zeroing_and_meets_the_target(kind):
    x = correlated_inputs(2048, 256, seed=2)
    weight = torch.randn(48, 256, generator=torch.Generator().manual_seed(3))
    stat = gathered(x)
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        w = pruned(method, weight, stat, kind)
        errors[method] = float(torch.linalg.norm((weight - w) @ x.t()))
        if kind == "unstructured":
            assert int((w == 0).sum()) == weight.numel() // 2
        else:
            n, m = map(int, kind.split(":"))
            zeros_per_group = (w == 0).reshape(48, -1, m).sum(-1)
            assert torch.all(zeros_per_group == m - n)
    assert errors["sparsegpt"] < errors["wanda"] and errors["sparsegpt"] < errors["magnitude"]


def test_obs_update_is_the_least_squares_solution_when_pruned_columns_come_first():
    """Pruning columns 0..k-1 in order with every later weight free to move is exactly the
    least-squares refit of the kept columns: min ||W X - W' X|| with W' zero on the pruned."""
    x = correlated_inputs(400, 10, seed=4).double()
    weight = torch.randn(3, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hessian = 2 * x.t() @ x / 400
    hinv = hess.inverse_cholesky(hessian.float(), percdamp=0.0).double()
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, :4] = True
    got = obs.obs_prune(weight.clone(), hinv, parse_sparsity("unstructured", 0.4, False),
                        fixed_mask=mask)
    target = x @ weight.t()  # [tokens, rows]
    solution = torch.linalg.lstsq(x[:, 4:], target).solution.t()
    assert torch.all(got[:, :4] == 0)
    assert torch.allclose(got[:, 4:], solution, rtol=1e-4, atol=1e-4)


def test_fixed_mask_ablations_keep_the_scores_mask():
    x = correlated_inputs(1024, 128, seed=6)
    weight = torch.randn(32, 128, generator=torch.Generator().manual_seed(7))
    stat = gathered(x)
    for method, scope, score in (("ablate_wanda_seq", "row", METHODS["wanda"].score.fn),
                                 ("ablate_mag_seq", "matrix", METHODS["magnitude"].score.fn)):
        sparsity = parse_sparsity("unstructured", 0.5, False)
        expected = sparsity.mask(score(weight, stat, option_settings()), scope)
        w = pruned(method, weight, stat, "unstructured")
        assert torch.equal(w == 0, expected)
        assert not torch.equal(w[~expected], weight[~expected])  # the kept weights moved


@pytest.mark.parametrize("method", ["ablate_mag_iter", "ablate_wanda_iter"])
def test_iterative_ablations_choose_each_block_on_updated_weights(method):
    x = correlated_inputs(1024, 256, seed=8)
    weight = torch.randn(16, 256, generator=torch.Generator().manual_seed(9))
    stat = gathered(x)
    w = pruned(method, weight, stat, "unstructured")
    assert int((w == 0).sum()) == weight.numel() // 2
    # the second block's mask differs from one chosen on the original weights
    base = "magnitude" if "mag" in method else "wanda"
    score = METHODS[base].score.fn(weight, stat, option_settings())[:, 128:]
    once = masks.lowest_mask(score, score.numel() // 2)
    assert not torch.equal(w[:, 128:] == 0, once)
    assert float(torch.linalg.norm((weight - w) @ x.t())) < float(
        torch.linalg.norm((weight - pruned(base, weight, stat, "unstructured")) @ x.t()))


def test_cholesky_failure_retries_with_more_damping(caplog):
    hessian = torch.tensor([[1.0, 3.0], [3.0, 1.0]])  # eigenvalues -2 and 4
    with caplog.at_level(logging.WARNING, logger="lib.stats.hessian"):
        upper = hess.inverse_cholesky(hessian, name="demo")
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 3 and "demo" in retries[0].getMessage()  # 0.01, 0.1, 1 fail; 10 works
    damped = hessian + 10 * torch.eye(2)
    assert torch.allclose(upper.t() @ upper, torch.linalg.inv(damped), atol=1e-6)
    with pytest.raises(hess.HessianError, match="calibration samples"):
        hess.inverse_cholesky(-torch.eye(3))  # negative diagonal: damping only makes it worse


def test_non_finite_hessian_is_one_user_error_not_a_retry_loop(caplog):
    hessian = torch.eye(3)
    hessian[1, 2] = float("nan")
    with caplog.at_level(logging.WARNING, logger="lib.stats.hessian"):
        with pytest.raises(UserError, match="inf/NaN.*--dtype"):
            hess.inverse_cholesky(hessian, name="demo")
    assert not caplog.records


def test_factoring_in_place_matches_a_copy_and_frees_the_hessian():
    x = correlated_inputs(512, 64, seed=12)
    x[:, 7] = 0
    stat = gathered(x)
    hessian = stat.hessian.clone()
    upper = stat.inverse_cholesky("demo")
    assert stat.hessian is None  # its memory became the work matrix
    assert torch.equal(stat.dead, torch.arange(64) == 7)
    assert stat.inverse_cholesky("demo") is upper  # q/k/v sharing the statistic factor once
    # independently: the dead diagonal set to 1, 1% of the mean diagonal added, inverted
    damped = hessian.double()
    damped[7, 7] = 1
    damped += 0.01 * torch.diagonal(damped).mean() * torch.eye(64, dtype=torch.float64)
    assert torch.allclose((upper.t() @ upper).double(), torch.linalg.inv(damped),
                          rtol=1e-3, atol=1e-4 * float(torch.linalg.inv(damped).abs().max()))
    assert torch.equal(upper, hess.inverse_cholesky(hessian))


def test_nm_groups_wider_than_a_block_still_meet_the_pattern():
    x = correlated_inputs(256, 32, seed=13)
    weight = torch.randn(4, 32, generator=torch.Generator().manual_seed(14))
    stat = gathered(x)
    sparsity = parse_sparsity("4:8", 0, False)
    w = obs.obs_prune(weight.clone(), stat.inverse_cholesky(), sparsity,
                      block_score=lambda cols, *_: cols.abs(), block_size=4)
    assert torch.all((w == 0).reshape(4, -1, 8).sum(-1) == 4)


def test_dead_inputs_are_zeroed_and_the_rest_still_solves():
    x = correlated_inputs(512, 64, seed=10)
    x[:, 5] = 0
    weight = torch.randn(8, 64, generator=torch.Generator().manual_seed(11))
    w = pruned("sparsegpt", weight, gathered(x), "unstructured")
    assert torch.all(w[:, 5] == 0) and torch.isfinite(w).all()
    assert int((w == 0).sum()) == weight.numel() // 2  # the dead column counts in the budget
