"""Selectivity statistics: streaming histogram vs exact definitions; scores vs direct formulas."""
from __future__ import annotations

import math

import pytest
import torch
from tiny_models import option_settings

from lib.pruning.methods import METHODS
from lib.stats.layerwrapper import ExactSelectivityWrappedGPT, SelectivityWrappedGPT
from lib.stats.loghist import LogHistogram, exact_quantile


def planted_batches(seed=0, samples=6, tokens=400, columns=48):
    """Random activations with planted always-on, never-on, all-zero and spiky channels."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(columns, generator=gen))
    for _ in range(samples):
        x = torch.randn(1, tokens, columns, generator=gen) * scale
        x[..., 0] = 0.0                                              # all zero
        x[..., 1] = 40 + torch.rand(1, tokens, generator=gen)          # always on, massive
        x[..., 2] = 1e-3 * torch.randn(1, tokens, generator=gen)       # never on
        spikes = torch.rand(1, tokens, generator=gen) < 0.03
        x[..., 3] = torch.where(spikes, 25.0, 0.01)                    # spiky
        yield x


def brute_force(batches, q, f):
    """The definitions, literally, with numpy-style quantile and explicit sorting."""
    a = torch.cat([b.reshape(-1, b.shape[-1]) for b in batches]).double().abs()
    tokens, columns = a.shape
    flat = a.flatten().sort().values
    pos = q * (flat.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    tau = float(flat[lo] + (pos - lo) * (flat[hi] - flat[lo]))
    n = torch.tensor([sum(1 for t in range(tokens) if a[t, j] > tau) for j in range(columns)],
                     dtype=torch.float64)
    k = math.ceil(f * tokens)
    spiky = []
    for j in range(columns):
        col = sorted(a[:, j].tolist(), reverse=True)
        mean = sum(col) / tokens
        spiky.append(1.0 if mean == 0 else (sum(col[:k]) / k) / mean)
    norm = a.pow(2).sum(0).sqrt()
    return tau, n / tokens, torch.tensor(spiky, dtype=torch.float64), norm, tokens


@pytest.mark.parametrize("q,f", [(0.6, 0.1), (0.9, 0.05), (0.3, 0.25)])
def test_exact_mode_matches_definitions(q, f):
    batches = list(planted_batches())
    stat = ExactSelectivityWrappedGPT(48, torch.device("cpu"))
    for b in batches:
        stat.add_batch(b)
    sel = stat.selectivity(q, f)
    tau, active, spiky, norm, tokens = brute_force(batches, q, f)
    assert sel.tokens == tokens
    assert math.isclose(sel.threshold, tau, rel_tol=1e-6)
    assert torch.allclose(sel.active_frac.double(), active, atol=1e-6)
    assert torch.allclose(sel.spikiness.double(), spiky, rtol=1e-5)
    assert torch.allclose(sel.norm.double(), norm, rtol=1e-5)
    idf = torch.log((tokens + 1) / (active * tokens + 1))
    assert torch.allclose(sel.idf(0.0).double(), idf, rtol=1e-5, atol=1e-6)
    assert torch.allclose(sel.idf(1.0).double(), idf + 1, rtol=1e-5)


@pytest.mark.parametrize("q,f,zoom", [(0.6, 0.1, True), (0.9, 0.05, True), (0.6, 0.1, False)])
def test_histogram_mode_within_bounds_of_exact(q, f, zoom):
    hist = SelectivityWrappedGPT(48, torch.device("cpu"), quantile=q if zoom else None)
    exact = ExactSelectivityWrappedGPT(48, torch.device("cpu"))
    for b in planted_batches(seed=1):
        hist.add_batch(b)
        exact.add_batch(b)
    h, e = hist.selectivity(q, f), exact.selectivity(q, f)
    assert abs(h.threshold - e.threshold) <= 0.01 * e.threshold
    assert (h.active_frac - e.active_frac).abs().max() <= 0.01
    assert ((h.spikiness - e.spikiness).abs() / e.spikiness).max() <= 0.02
    assert torch.equal(h.norm, e.norm)
    # the planted channels come out as planted
    assert h.active_frac[1] == 1 and h.active_frac[2] == 0 and h.spikiness[0] == 1
    assert h.spikiness[3] > 5 > 1.2 > h.spikiness[1]


def test_histogram_memory_does_not_grow_with_tokens(monkeypatch):
    from lib.stats import layerwrapper

    monkeypatch.setattr(layerwrapper, "PENDING_VALUES", 16 * 2500)
    stat = SelectivityWrappedGPT(16, torch.device("cpu"), quantile=0.6)
    sizes = []
    for _ in range(12):
        stat.add_batch(torch.randn(1, 1000, 16))
        buffered = sum(x.numel() for x in stat._pending)
        assert buffered < 16 * 2500  # the buffer is counted once it reaches its limit
        sizes.append(stat.hist.nbytes())
    assert 0 < sizes[2] == sizes[-1] and stat.hist.tokens == 12000


@pytest.mark.parametrize("sample", [1, 3])
def test_subsample_takes_rotating_rows_and_buffering_changes_nothing(monkeypatch, sample):
    """The histogram sees every `sample`-th token (offset = batch index mod sample), exactly
    those rows however the buffer splits them; the norm and T use every token."""
    from lib.stats import layerwrapper

    batches = list(planted_batches(seed=4, samples=7, tokens=301))
    rows = torch.cat([b.reshape(-1, 48)[i % sample::sample] for i, b in enumerate(batches)])
    exact = ExactSelectivityWrappedGPT(48, torch.device("cpu"))
    exact.add_batch(rows.unsqueeze(0))
    for limit in (1, 48 * 500, 1 << 30):  # update every batch, every few, once at the end
        monkeypatch.setattr(layerwrapper, "PENDING_VALUES", limit)
        stat = SelectivityWrappedGPT(48, torch.device("cpu"), quantile=0.6, sample=sample)
        for b in batches:
            stat.add_batch(b)
        sel = stat.selectivity(0.6, 0.1)
        assert stat.hist.tokens == rows.shape[0] and sel.tokens == 7 * 301
        assert stat.hist.store.sum() == rows.numel()
        assert torch.equal(stat.hist.maximum, rows.abs().amax(0))
        assert torch.allclose(stat.hist.total, rows.abs().double().sum(0), rtol=1e-6)
        full = torch.cat([b.reshape(-1, 48) for b in batches]).double()
        assert torch.allclose(sel.norm.double(), full.pow(2).sum(0).sqrt(), rtol=1e-5)
        e = exact.selectivity(0.6, 0.1)  # the definitions on the sampled rows
        assert (sel.active_frac - e.active_frac).abs().max() <= 0.01
        assert ((sel.spikiness - e.spikiness).abs() / e.spikiness).max() <= 0.02


def test_counts_past_the_16_bit_range():
    """The CPU kernel counts in 16 bits: 70000 tied values in one batch, then more, must all
    land in one bin of the int32 table."""
    hist = LogHistogram(2, torch.device("cpu"), zoom_quantile=0.6)
    x = torch.tensor([[1.5, 3.0]]).expand(70000, 2)
    hist.add(x)
    hist.add(x[:100])
    assert hist.store.max() == 70100 and hist.store.sum() == 2 * 70100


def test_exact_quantile_is_numpys_linear():
    values = torch.tensor([5.0, 1.0, 3.0, 2.0])
    assert exact_quantile(values, 0.5) == 2.5
    assert math.isclose(exact_quantile(values, 0.6), 2 + 0.8 * 1.0)


class FixedStat:
    def __init__(self, sel):
        self.sel = sel

    def selectivity(self, q, f):
        return self.sel


@pytest.mark.parametrize("method", ["wanda_idf", "wanda_spiky", "wanda_select"])
@pytest.mark.parametrize("alpha,beta,offset", [(1.0, 1.0, 0.0), (0.5, 0.25, 1.0)])
def test_scores_match_direct_formula(method, alpha, beta, offset):
    exact = ExactSelectivityWrappedGPT(48, torch.device("cpu"))
    for b in planted_batches(seed=2):
        exact.add_batch(b)
    sel = exact.selectivity(0.6, 0.1)
    weight = torch.randn(5, 48)
    opts = option_settings(idf_offset=offset, idf_power=alpha, spiky_power=beta)
    score = METHODS[method].score.fn(weight, FixedStat(sel), opts)
    for i in range(5):
        for j in range(48):
            idf = math.log((sel.tokens + 1) / (sel.active_frac[j].item() * sel.tokens + 1)) + offset
            expected = abs(weight[i, j].item()) * sel.norm[j].item()
            if method in ("wanda_idf", "wanda_select"):
                expected *= idf ** alpha
            if method in ("wanda_spiky", "wanda_select"):
                expected *= sel.spikiness[j].item() ** beta
            assert math.isclose(score[i, j].item(), expected, rel_tol=1e-4, abs_tol=1e-6)


def test_floor_keeps_massive_channel_alive():
    exact = ExactSelectivityWrappedGPT(48, torch.device("cpu"))
    for b in planted_batches(seed=3):
        exact.add_batch(b)
    sel = exact.selectivity(0.6, 0.1)
    weight = torch.ones(1, 48)
    faithful = METHODS["wanda_idf"].score.fn(weight, FixedStat(sel), option_settings())
    assert faithful[0, 1] < 0.01 * sel.norm[1]  # always-on massive channel: idf ~ 0
    floored = METHODS["wanda_idf"].score.fn(weight, FixedStat(sel),
                                            option_settings(selectivity_floor=1))
    idf = sel.idf(0.0)
    for j in range(48):
        expected = sel.norm[j].item() * max(idf[j].item() / idf.median().item(), 1.0)
        assert math.isclose(floored[0, j].item(), expected, rel_tol=1e-5)


@pytest.mark.parametrize("pending_tokens", [None, 7])  # 7: the 16-bit counts fold every 7 tokens
def test_fused_cpu_kernel_matches_torch_ops(monkeypatch, pending_tokens):
    from lib.stats import loghist

    if loghist._fused_add is None:
        pytest.skip("numba not installed")
    if pending_tokens is not None:
        monkeypatch.setattr(loghist, "PENDING_TOKENS", pending_tokens)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(300, 70, generator=gen) * torch.exp(3 * torch.randn(70, generator=gen))
    x[:, 0] = 0
    x[:5, 1] = 1e9  # above the top bin
    x[:, 2] = 1e-9  # below the bottom bin
    fused = loghist.LogHistogram(70, x.device, zoom_quantile=0.6)
    reference = loghist.LogHistogram(70, x.device, zoom_quantile=0.6)
    fused.add(x)
    fused.add(x[:40] * 1.001)  # a second batch accumulates; one partial tile
    threshold = fused.quantile_all(0.6)
    active = fused.count_above(threshold)
    coarse_active = loghist._share_above(fused.counts, *fused.edges(), threshold)
    monkeypatch.setattr(loghist, "_fused_add", None)
    monkeypatch.setattr(loghist, "_fused_bin_totals", None)
    monkeypatch.setattr(loghist, "_fused_weighted_sums", None)
    reference.add(x)
    reference.add(x[:40] * 1.001)
    assert reference.quantile_all(0.6) == threshold
    assert torch.allclose(reference.count_above(threshold), active, rtol=1e-12)
    assert torch.allclose(loghist._share_above(reference.counts, *reference.edges(), threshold),
                          coarse_active, rtol=1e-12)
    assert fused.zoom_counts.shape[1] > 100 and fused.zoom_counts.sum() > 0
    assert torch.equal(fused.store, reference.store)
    assert torch.equal(fused.counts, reference.counts)
    assert torch.equal(fused.zoom_counts, reference.zoom_counts)
    assert torch.equal(fused.zoom_above, reference.zoom_above)
    assert torch.allclose(fused.total, reference.total, rtol=1e-6)
    assert torch.equal(fused.maximum, reference.maximum)
    fused_top = {k: fused.top_mean(k) for k in (1, 30, 300)}
    monkeypatch.setattr(loghist, "_fused_top_mean", None)
    for k, top in fused_top.items():
        assert torch.allclose(top, reference.top_mean(k), rtol=1e-9)
    monkeypatch.setattr(loghist, "TOP_MEAN_CHUNK", 3 * fused.store.shape[1])  # 3 channels a step
    for k, top in fused_top.items():
        assert torch.allclose(top, reference.top_mean(k), rtol=1e-9)
    # and the counts are where the bin edges say
    lower, upper = fused.edges()
    for j in (3, 10, 50):
        for value in x[:, j].abs()[:20]:
            b = int(((lower <= value) & (value < upper)).nonzero()[0])
            assert fused.counts[j, b] > 0


def test_ties_near_the_threshold_are_not_split():
    """Repeated tokens repeat activations: a tied mass just above the threshold (inside the
    same coarse bin) must count as active, not be split by the uniform-within-bin reading."""
    gen = torch.Generator().manual_seed(6)
    n, tied = 32000, 1600
    spread = (torch.arange(n - tied) + 0.5) / (n - tied) * 2  # evenly over (0, 2)
    # 5% tied at 1.265: the 0.6-quantile lands at 1.2632, 0.15% below, in the same coarse bin
    values = torch.cat([spread, torch.full((tied,), 1.265)])
    x = values[torch.randperm(n, generator=gen)].reshape(4000, 8)
    exact = ExactSelectivityWrappedGPT(8, torch.device("cpu"))
    hist = SelectivityWrappedGPT(8, torch.device("cpu"), quantile=0.6)
    for chunk in x.split(1000):
        exact.add_batch(chunk.unsqueeze(0))
        hist.add_batch(chunk.unsqueeze(0))
    e, h = exact.selectivity(0.6, 0.1), hist.selectivity(0.6, 0.1)
    assert e.threshold < 1.2645
    assert abs(h.threshold - e.threshold) <= 1e-3 * e.threshold
    assert (h.active_frac - e.active_frac).abs().max() <= 5e-4  # coarse bins alone: 1.6e-3


@pytest.mark.parametrize("method,flag,expected", [
    ("wanda_select", [], 1.0), ("wanda_idf", [], 1.0), ("wanda_spiky", [], 0.0),
    ("wanda_select", ["--selectivity_floor", "0"], 0.0),
    ("wanda_spiky", ["--selectivity_floor", "2"], 2.0),
])
def test_selectivity_floor_defaults_per_method(method, flag, expected, tiny_llama_dir):
    from lib.run.cli import build_parser
    from lib.run.plan import plan_run

    args = build_parser().parse_args(["--model", str(tiny_llama_dir), "--prune_method", method,
                                      "--sparsity_ratio", "0.5", *flag])
    assert plan_run(args).settings.selectivity_floor == expected


def test_zoom_window_holds_the_first_batch_threshold_when_channels_differ():
    """The window's centre comes from a strided subsample; a stride sharing a factor with
    the channel count would see only some channels (here: only the quiet even ones)."""
    from lib.stats.loghist import LogHistogram

    gen = torch.Generator().manual_seed(8)
    x = torch.rand(2048, 64, generator=gen) + 0.5
    x[:, 1::2] *= 100  # loud odd channels
    hist = LogHistogram(64, x.device, zoom_quantile=0.6)
    hist.add(x)
    lower, upper = hist.zoom_edges()
    assert lower[0] <= exact_quantile(x.reshape(-1), 0.6) < upper[-1]
