"""Mixture-of-experts models in transformers 5's fused-experts layout: every block weight counted,
each expert pruned from the tokens its router sends it, checked against computations done
another way (hooks on the model's own forward, sums and sorts by hand)."""
from __future__ import annotations

import copy
import math
from collections import defaultdict

import pytest
import tiny_models
import torch
from safetensors.torch import load_file
from test_cli import FAST, error_line, load_results
from torch import nn
from transformers import AutoModelForCausalLM

import main
from lib.arch.experts import MOE_CALIBRATION, fused_names, is_fused_experts
from lib.arch.matrices import block_parts, routed_record
from lib.pruning.methods import METHODS
from lib.pruning.prune import prune_model
from lib.pruning.replay import BlockWalk
from lib.pruning.sparsity import Sparsity
from lib.run.errors import UserError
from lib.stats.experts_tap import ExpertsTap
from lib.stats.layerwrapper import HessianWrappedGPT, WrappedGPT

# fused layouts: concatenated gate/up (qwen3_moe, mixtral with its renamed legacy checkpoint,
# olmoe), shared experts and their gate (qwen2_moe), shared experts beside a grouped router
# (deepseek_v2/v3), transposed, interleaved, biased, own gate (gpt_oss): the families the README
# names
FAMILIES = ["qwen3_moe", "mixtral", "qwen2_moe", "gpt_oss", "olmoe", "deepseek_v2",
            "deepseek_v3"]
VOCAB = 128


def build(family: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_models.tiny_moe_config(family, VOCAB,
                                                                         **overrides))
    tiny_models.spread_experts(model)
    return model.eval()


def samples(n: int = 4, length: int = 24, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (1, length), generator=gen) for _ in range(n)]


def experts_of(block: nn.Module) -> tuple[str, nn.Module]:
    return next((n, m) for n, m in block.named_modules() if is_fused_experts(m))


def expert_view(module: nn.Module, param: str, e: int) -> torch.Tensor:
    weight = getattr(module, param).data[e]
    return weight.t() if module.is_transposed else weight


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", MOE_CALIBRATION)
def test_tap_computes_what_the_model_computes(family, mode):
    model = build(family)
    ids = samples(1)[0]
    with torch.no_grad():
        expected = model(ids).logits
    fed: dict[tuple[int, str], int] = defaultdict(int)
    taps = []

    def counter(b):
        def feed(key, x):
            fed[b, key] += x.shape[0]
        return feed

    for b, block in enumerate(model.model.layers):
        for name, module in block_parts(block).experts.items():
            taps.append(ExpertsTap(name, module, counter(b), mode))
    with torch.no_grad():
        got = model(ids).logits
    for tap in taps:
        tap.remove()
        assert "forward" not in tap.module.__dict__  # the model's own forward is back
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    for b, tap in enumerate(taps):
        for e in range(tap.experts):
            want = ids.shape[1] if mode == "all" else int(tap.routed_tokens[e])
            assert fed[b, f"{tap.name}.{tap.up}.{e}"] == want
            assert fed[b, f"{tap.name}.{tap.down}.{e}"] == want
        assert int(tap.routed_tokens.sum()) == ids.shape[1] * model.config.num_experts_per_tok


DENSE_BY_DESIGN = {
    "qwen3_moe": ["mlp.gate.weight"],
    "mixtral": ["mlp.gate.weight"],
    "qwen2_moe": ["mlp.gate.weight", "mlp.shared_expert_gate.weight"],
    "gpt_oss": ["mlp.experts.down_proj_bias", "mlp.experts.gate_up_proj_bias",
                "mlp.router.weight"],
    "olmoe": ["mlp.gate.weight"],
    "deepseek_v2": ["mlp.gate.weight"],
    "deepseek_v3": ["mlp.gate.weight"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_replayed_blocks_match_the_models_own_forward(family):
    """Each block run on the inputs captured for it gives what the model's own forward gives,
    as for the dense families (tests/test_replay.py)."""
    from test_replay import last_block_outputs, random_samples, replayed_outputs

    model = build(family)
    calib = random_samples(model)
    expected = last_block_outputs(model, calib)
    assert (replayed_outputs(model, calib) - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.parametrize("family", FAMILIES)
def test_every_block_weight_is_pruned_or_named_dense(family):
    model = build(family)
    for block in model.model.layers:
        parts = block_parts(block)
        assert sorted(parts.dense) == DENSE_BY_DESIGN[family]
        params = dict(block.named_parameters())
        pruned = sum(w.numel() for w in parts.matrices().values())
        dense = sum(params[n].numel() for n in parts.dense)
        small = sum(p.numel() for p in params.values() if p.dim() < 2)
        assert pruned + dense + small == sum(p.numel() for p in params.values())
        experts = experts_of(block)[1]
        assert len(parts.matrices()) == len(parts.linears) + 2 * experts.down_proj.shape[0]
    if family == "qwen2_moe":  # shared experts are an MLP like any other: pruned
        assert "mlp.shared_expert.down_proj" in block_parts(model.model.layers[0]).linears


def test_unknown_block_weight_is_refused_before_pruning(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.model.layers[1].mlp.extra = nn.Parameter(torch.ones(4, 4))
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(UserError, match=r"block 1 holds mlp\.extra of shape \(4, 4\)"):
        prune_model(model, METHODS["magnitude"], Sparsity(0.5), None,
                    tiny_models.option_settings())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_unknown_architecture_is_refused_in_one_line(tmp_path, tokenizer, data_dir, capsys):
    """Qwen3-Next's blocks hold a convolution: refused at planning, naming it."""
    config = tiny_models.tiny_moe_config("qwen3_next", len(tokenizer),
                                         layer_types=["linear_attention", "full_attention"])
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert main.main(["--model", str(tmp_path / "m"), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "out"), *FAST, "--prune_method", "wanda",
                      "--sparsity_ratio", "0.5"]) == 2
    assert "linear_attn.conv1d.weight" in error_line(capsys)
    assert not (tmp_path / "out" / "results_wanda.json").exists()


def direct_wanda(model: nn.Module, calib: list[torch.Tensor], ratio: float) -> dict:
    """Wanda by hand, block by block, each block's inputs captured with hooks on the model's own
    forward (earlier blocks already pruned): Linears from their inputs, each expert from the
    tokens its router chose (pre-hook on the experts module: hidden states, top-k indices), its
    down matrix from act(gate) * up computed here. Rows sorted, the lowest scores zeroed."""
    ref = copy.deepcopy(model)
    masks = {}
    for b, block in enumerate(ref.model.layers):
        sq: dict[str, torch.Tensor] = defaultdict(lambda: 0)
        linears = {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
        ename, experts = experts_of(block)

        def on_linear(name):
            def hook(mod, args, out):
                sq[name] = sq[name] + args[0].double().reshape(-1, args[0].shape[-1]).pow(2).sum(0)
            return hook

        def on_experts(mod, args):
            hidden, index = args[0].double(), args[1]
            for e in range(mod.down_proj.shape[0]):
                x = hidden[(index == e).any(-1)]
                gate, up = (x @ mod.gate_up_proj[e].double().t()).chunk(2, dim=-1)
                act = nn.functional.silu(gate) * up
                sq[f"{ename}.gate_up_proj.{e}"] = sq[f"{ename}.gate_up_proj.{e}"] + x.pow(2).sum(0)
                sq[f"{ename}.down_proj.{e}"] = sq[f"{ename}.down_proj.{e}"] + act.pow(2).sum(0)

        hooks = [m.register_forward_hook(on_linear(n)) for n, m in linears.items()]
        hooks.append(experts.register_forward_pre_hook(on_experts))
        with torch.no_grad():
            for ids in calib:
                ref(ids)
        for h in hooks:
            h.remove()
        weights = {n: m.weight.data for n, m in linears.items()}
        for e in range(experts.down_proj.shape[0]):
            weights[f"{ename}.gate_up_proj.{e}"] = experts.gate_up_proj.data[e]
            weights[f"{ename}.down_proj.{e}"] = experts.down_proj.data[e]
        for name, w in weights.items():
            score = w.double().abs() * sq[name].sqrt().reshape(1, -1)
            k = int(w.shape[1] * ratio)
            mask = torch.zeros_like(w, dtype=torch.bool)
            mask.scatter_(1, score.argsort(dim=1, stable=True)[:, :k], True)
            w[mask] = 0
            masks[f"{b}.{name}"] = mask
    return masks


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_wanda_masks_equal_a_direct_per_expert_computation(family):
    model = build(family)
    calib = samples(4, 32)
    expected = direct_wanda(model, calib, 0.5)
    prune_model(model, METHODS["wanda"], Sparsity(0.5), calib, tiny_models.option_settings())
    for b, block in enumerate(model.model.layers):
        for name, weight in block_parts(block).matrices().items():
            assert torch.equal(weight == 0, expected[f"{b}.{name}"]), f"{b}.{name}"


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "wanda_spiky"])
def test_two_four_is_exact_on_every_expert_matrix(method):
    model = build("qwen3_moe")
    prune_model(model, METHODS[method], Sparsity(0.5, 2, 4), samples(),
                tiny_models.option_settings(selectivity_floor=1.0))
    for block in model.model.layers:
        _, experts = experts_of(block)
        for param in fused_names(experts):
            for e in range(experts.down_proj.shape[0]):
                w = expert_view(experts, param, e)
                zeros = (w == 0).reshape(w.shape[0], -1, 4).sum(-1)
                assert torch.equal(zeros, torch.full_like(zeros, 2)), f"{param}.{e}"


def test_sparsegpt_hessian_per_expert_is_the_routed_tokens_gram_matrix():
    model = build("mixtral")
    calib = samples(4, 32)
    grams: dict[tuple[str, int], list[torch.Tensor]] = defaultdict(list)
    _, experts = experts_of(model.model.layers[0])

    def capture(mod, args):
        hidden, index = args[0].double(), args[1]
        for e in range(mod.down_proj.shape[0]):
            x = hidden[(index == e).any(-1)]
            if len(x):
                gate, up = (x @ mod.gate_up_proj[e].double().t()).chunk(2, dim=-1)
                act = mod.act_fn(gate) * up
                grams["gate_up_proj", e].append(x.t() @ x)
                grams["down_proj", e].append(act.t() @ act)

    handle = experts.register_forward_pre_hook(capture)
    with torch.no_grad():
        for ids in calib:
            model(ids)
    handle.remove()
    visit = next(iter(BlockWalk(model, calib, HessianWrappedGPT, replay=False)))
    for (param, e), per_sample in grams.items():
        stat = visit.stats[f"mlp.experts.{param}.{e}"]
        expected = 2 / len(per_sample) * torch.stack(per_sample).sum(0)
        assert torch.allclose(stat.hessian.double(), expected, rtol=1e-4, atol=1e-6), (param, e)


def unrouted_expert_model() -> nn.Module:
    """Qwen3-MoE with top-1 routing whose block-0 router can never pick expert 3 (its logit is
    0, and one of experts 0 and 1 always scores above 0)."""
    model = build("qwen3_moe", num_experts_per_tok=1)
    with torch.no_grad():
        router = model.model.layers[0].mlp.gate.weight
        router[1] = -router[0]
        router[3] = 0
    return model


def test_an_expert_without_tokens_gets_every_tokens_statistics():
    model = unrouted_expert_model()
    calib = samples(3, 16)
    hidden = []
    handle = model.model.layers[0].mlp.experts.register_forward_pre_hook(
        lambda mod, args: hidden.append(args[0].double()))
    with torch.no_grad():
        for ids in calib:
            model(ids)
    handle.remove()
    visit = next(iter(BlockWalk(model, calib, WrappedGPT, replay=False)))
    assert visit.expert_tokens[3] == 0 and sum(visit.expert_tokens) == 3 * 16
    x = torch.cat(hidden)
    stat = visit.stats["mlp.experts.gate_up_proj.3"]
    assert stat.tokens == x.shape[0]
    assert torch.allclose(stat.total_norm().double(), x.pow(2).sum(0).sqrt(), rtol=1e-5)
    record = routed_record([visit.expert_tokens, []])["expert_tokens_per_layer"]
    assert record[0]["without_tokens"] == 1 and record[0]["fewest"] == 0
    assert record[1] is None


def count_saved(folder) -> tuple[int, int, dict]:
    """Zeros and weights over the saved block tensors of two or more dimensions, routers aside
    (names as save_pretrained writes them: per expert)."""
    tensors = {}
    for file in folder.glob("*.safetensors"):
        tensors.update(load_file(file))
    zeros = total = 0
    for name, t in tensors.items():
        if ".layers." in name and t.dim() >= 2 and ".gate.weight" not in name:
            zeros, total = zeros + int((t == 0).sum()), total + t.numel()
    return zeros, total, tensors


@pytest.mark.parametrize("kind", ["unstructured", "2:4"])
def test_recorded_sparsity_is_what_the_saved_model_holds(kind, tiny_qwen3_moe_dir, tmp_path,
                                                         data_dir):
    saved = tmp_path / "model"
    assert main.main(["--model", str(tiny_qwen3_moe_dir), "--data_dir", str(data_dir),
                      "--save", str(tmp_path), *FAST, "--prune_method", "wanda",
                      "--sparsity_ratio", "0.5", "--sparsity_type", kind,
                      "--save_model", str(saved)]) == 0
    res = load_results(tmp_path, "wanda")
    zeros, total, tensors = count_saved(saved)
    assert res["actual_sparsity"] == zeros / total == 0.5
    experts = [t for n, t in tensors.items() if ".experts." in n]
    assert experts and all(float((t == 0).float().mean()) == 0.5 for t in experts)
    assert res["dense_by_design"] == ["mlp.gate.weight"]
    assert math.isclose(res["expert_weight_share"], 2 * 4 * 3 * 32 * 64 / (
        2 * 4 * 3 * 32 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32)))
    per_layer = res["expert_tokens_per_layer"]
    assert len(per_layer) == 2 and all(layer["most"] >= layer["median"] >= layer["fewest"]
                                       for layer in per_layer)
    reloaded = AutoModelForCausalLM.from_pretrained(saved)  # plain transformers, zeros kept
    for block in reloaded.model.layers:
        assert float((block.mlp.experts.gate_up_proj == 0).float().mean()) == 0.5


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_offload_equals_in_memory(family, request, tmp_path, data_dir):
    model_dir = request.getfixturevalue(f"tiny_{family}_dir")
    out = {}
    for mode in ("memory", "offload"):
        save = tmp_path / mode
        argv = ["--model", str(model_dir), "--data_dir", str(data_dir), "--save", str(save),
                *FAST, "--prune_method", "sparsegpt", "--sparsity_ratio", "0.5",
                "--save_model", str(save / "model")]
        assert main.main(argv + (["--offload"] if mode == "offload" else [])) == 0
        weights = AutoModelForCausalLM.from_pretrained(save / "model").state_dict()
        out[mode] = load_results(save, "sparsegpt"), weights
    (memory, w_memory), (offload, w_offload) = out["memory"], out["offload"]
    for key in ("ppl_test", "actual_sparsity", "sparsity_per_layer", "expert_tokens_per_layer"):
        assert memory[key] == offload[key], key
    assert set(w_memory) == set(w_offload)
    for name in w_memory:
        assert torch.equal(w_memory[name], w_offload[name]), name


def test_moe_calibration_all_feeds_every_token_and_is_recorded(tiny_mixtral_dir, tmp_path,
                                                                data_dir):
    for mode in MOE_CALIBRATION:
        assert main.main(["--model", str(tiny_mixtral_dir), "--data_dir", str(data_dir),
                          "--save", str(tmp_path / mode), *FAST, "--prune_method", "wanda",
                          "--sparsity_ratio", "0.5", "--moe_calibration", mode]) == 0
    routed, every = (load_results(tmp_path / m, "wanda") for m in MOE_CALIBRATION)
    assert routed["moe_calibration"] == "routed" and every["moe_calibration"] == "all"
    assert routed["actual_sparsity"] == every["actual_sparsity"] == 0.5
    assert routed["ppl_test"] != every["ppl_test"]  # other statistics, other masks


def test_owl_and_saved_statistics_cover_the_experts(tiny_qwen3_moe_dir, tmp_path, data_dir):
    stats_file = tmp_path / "stats.safetensors"
    assert main.main(["--model", str(tiny_qwen3_moe_dir), "--data_dir", str(data_dir),
                      "--save", str(tmp_path), *FAST, "--prune_method", "wanda_idf",
                      "--sparsity_ratio", "0.6", "--layer_sparsity", "owl",
                      "--owl_lambda", "0.05", "--save_stats", str(stats_file)]) == 0
    res = load_results(tmp_path, "wanda_idf")
    targets = res["sparsity_target_per_layer"]
    assert math.isclose(sum(targets) / len(targets), 0.6) and len(set(targets)) == 2
    # every matrix of a block, experts' included, pruned to the block's own target, up to the
    # rounding of int(ratio * inputs) per row (down_proj's 32 inputs: 1/32 at most)
    for actual, target in zip(res["sparsity_per_layer"], targets):
        assert target - 1 / 32 < actual <= target
    stats = load_file(stats_file)
    for e in range(4):
        for param in ("gate_up_proj", "down_proj"):
            assert f"model.layers.1.mlp.experts.{param}.{e}.idf" in stats


@pytest.mark.parametrize("mode", MOE_CALIBRATION)
def test_an_expert_without_tokens_is_fed_every_token_once(mode):
    """Both modes end with the same statistics for the unrouted expert: every token, counted
    once (in `all` mode the first pass already fed it; no fallback pass adds it again)."""
    model = unrouted_expert_model()
    calib = samples(3, 16)
    visit = next(iter(BlockWalk(model, calib, WrappedGPT, replay=False, moe_calibration=mode)))
    stat = visit.stats["mlp.experts.gate_up_proj.3"]
    assert visit.expert_tokens[3] == 0
    assert stat.tokens == 3 * 16 and stat.nsamples == 3
