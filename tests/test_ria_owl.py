"""RIA's score and OWL's layer-wise sparsity against hand computations, and every method of the
table with OWL through the CLI."""
from __future__ import annotations

import math

import pytest
import torch
from test_cli import check_exact_run, error_line, load_results, run_cli
from tiny_models import option_settings

from lib.pruning import layer_sparsity
from lib.pruning.methods import METHODS


class NormStat:
    def __init__(self, norm):
        self.norm = norm

    def column_norm(self):
        return self.norm


@pytest.mark.parametrize("power", [0.5, 1.0])
def test_ria_score_matches_a_loop(power):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 7, generator=gen)
    weight[:, 3] = 0  # an all-zero column adds nothing, divides nothing
    norm = torch.rand(7, generator=gen) + 0.1
    score = METHODS["ria"].score.fn(weight, NormStat(norm), option_settings(ria_power=power))
    for i in range(5):
        for j in range(7):
            w = abs(weight[i, j].item())
            column = sum(abs(weight[k, j].item()) for k in range(5))
            row = sum(abs(weight[i, k].item()) for k in range(7))
            expected = ((w / column if column else 0) + (w / row if row else 0)) \
                * norm[j].item() ** power
            assert math.isclose(score[i, j].item(), expected, rel_tol=1e-5, abs_tol=1e-7)


def test_ria_compares_within_the_matrix_or_the_row():
    """Default: one threshold over the matrix (rows lose different counts); row: each row half."""
    ria = METHODS["ria"]
    assert ria.scope_for(ria.settings({})) == "matrix"
    assert ria.scope_for(ria.settings({"ria_compare": "row"})) == "row"


def test_outlier_ratio_by_hand():
    scores = [torch.tensor([[1.0, 1.0, 1.0, 13.0]]), torch.tensor([1.0, 1.0, 1.0, 1.0])]
    # mean 20 / 8 = 2.5; above 5 * 2.5 = 12.5: the one 13 -> 1/8
    assert layer_sparsity.outlier_ratio(scores, 5.0) == 1 / 8
    assert layer_sparsity.outlier_ratio(scores, 6.0) == 0.0


def test_owl_ratios_by_hand():
    outliers = [0.01, 0.03, 0.02, 0.05]
    ratios = layer_sparsity.owl_ratios(outliers, 0.7, 0.08)
    # densities (D - 0.01) / 0.04 * 0.16 = 0, 0.08, 0.04, 0.16 (mean 0.07); shifted to mean 0.3
    expected = [1 - (d - 0.07 + 0.3) for d in (0.0, 0.08, 0.04, 0.16)]
    assert all(math.isclose(r, e, abs_tol=1e-12) for r, e in zip(ratios, expected))
    assert math.isclose(sum(ratios) / 4, 0.7, abs_tol=1e-12)
    assert ratios[3] == min(ratios)  # the block with most outliers is pruned least


def test_owl_with_equal_outlier_ratios_is_uniform():
    assert layer_sparsity.owl_ratios([0.02] * 5, 0.6, 0.08) == [0.6] * 5


def test_owl_refuses_nm_and_out_of_range_blocks(tiny_llama_dir, tmp_path, data_dir, capsys):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_type", "2:4", "--layer_sparsity", "owl") == 2
    assert "N:M" in error_line(capsys)
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "wanda",
                   "--sparsity_ratio", "0.9", "--layer_sparsity", "owl",
                   "--owl_lambda", "0.5") == 2
    assert "outside [0, 1)" in error_line(capsys)


@pytest.mark.parametrize("method", [  # the quick loop keeps two; the full suite runs them all
    pytest.param(m, marks=() if m in ("wanda", "ria") else pytest.mark.slow) for m in METHODS])
def test_every_method_composes_with_owl(method, tiny_llama_dir, tmp_path, data_dir):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", method,
                   "--sparsity_ratio", "0.6", "--layer_sparsity", "owl",
                   "--owl_lambda", "0.1") == 0
    res = load_results(tmp_path, method)
    targets = res["sparsity_target_per_layer"]
    assert math.isclose(sum(targets) / len(targets), 0.6, abs_tol=1e-12)
    assert len(set(targets)) == 2 and len(res["owl_outlier_ratio"]) == 2
    assert res["layer_sparsity"] == {"layer_sparsity": "owl", "owl_m": 5.0, "owl_lambda": 0.1}
    for target, achieved in zip(targets, res["sparsity_per_layer"]):
        # each row (or matrix) prunes int(ratio * size): at most one weight in 64 short
        assert target - 1 / 64 <= achieved <= target + 1e-12
    assert res["owl_pass_seconds"] > 0


def test_ria_prunes_exactly_per_row_too(tiny_llama_dir, tmp_path, data_dir):
    assert run_cli(tiny_llama_dir, tmp_path, data_dir, "--prune_method", "ria",
                   "--sparsity_ratio", "0.5", "--ria_compare", "row") == 0
    check_exact_run(tmp_path, "ria")
