"""Wanda's input statistic against direct computation on captured activations."""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from lib.arch.matrices import block_parts
from lib.stats.layerwrapper import InputStatsCollector, WrappedGPT


def test_wrapped_gpt_matches_direct_norms():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(1, 9, 5, generator=gen) * torch.arange(1, 6) for _ in range(4)]
    stat = WrappedGPT(5, torch.device("cpu"))
    for b in batches:
        stat.add_batch(b)
    stacked = torch.cat([b[0] for b in batches])  # [36, 5]
    direct_total = torch.sqrt((stacked.double() ** 2).sum(0))
    assert torch.allclose(stat.total_norm().double(), direct_total, rtol=1e-5)
    per_sample_mean = torch.stack([(b[0].double() ** 2).sum(0) for b in batches]).mean(0)
    assert torch.allclose(stat.column_norm().double(), per_sample_mean.sqrt(), rtol=1e-5)
    assert stat.tokens == 36 and stat.nsamples == 4


def test_collector_shares_inputs_and_matches_captured(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    block = model.model.layers[0]
    parts = block_parts(block)
    linears = parts.linears
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in linears}
    handles = [lin.register_forward_hook(
        lambda mod, args, out, name=name: captured[name].append(args[0].detach().clone()))
        for name, lin in linears.items()]
    collector = InputStatsCollector(parts, WrappedGPT)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randint(0, model.config.vocab_size, (1, 12), generator=gen))
            collector.end_sample()
    collector.remove()
    for h in handles:
        h.remove()
    stats = collector.stats
    assert stats["self_attn.q_proj"] is stats["self_attn.k_proj"] is stats["self_attn.v_proj"]
    assert stats["mlp.gate_proj"] is stats["mlp.up_proj"]
    assert len({id(s) for s in stats.values()}) == 4
    for name, inputs in captured.items():
        x = torch.cat([i.reshape(-1, i.shape[-1]) for i in inputs]).double()
        assert torch.allclose(stats[name].total_norm().double(), x.pow(2).sum(0).sqrt(), rtol=1e-4)
