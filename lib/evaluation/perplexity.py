"""WikiText-2 perplexity over non-overlapping windows (zero-shot accuracy: lib/evaluation/zeroshot.py)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

PPL_FORMULAS = ("exact", "wanda")


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    windows: int
    predicted_tokens: int


def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int, max_windows: int | None = None,
               formula: str = "exact", forward=None) -> Perplexity:
    """Perplexity over the first `max_windows` windows of `seqlen` tokens (tail dropped).
    `forward(w, batch)` gives window w's logits (default: the model's forward; --offload
    streams the blocks instead).

    "exact": exp(total NLL / total predicted tokens), NLL summed in float64.
    "wanda": the Wanda repository's formula, exp(sum_w mean_loss_w * seqlen / (W * seqlen)),
    summed in float32. Every window predicts seqlen-1 tokens, so both are the same number up to
    rounding; the flag exists so published numbers can be compared like for like.
    """
    import torch  # here, not at the top: the CLI reads PPL_FORMULAS without torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from lib.arch.blocks import input_device

    windows = ids.shape[1] // seqlen
    if max_windows is not None:
        windows = min(windows, max_windows)
    if windows == 0:
        raise ValueError(f"the evaluation text has fewer than {seqlen} tokens")
    device = input_device(model)
    total_nll = 0.0
    wanda_nlls = []
    for w in tqdm(range(windows), desc="wikitext2 ppl"):
        batch = ids[:, w * seqlen:(w + 1) * seqlen].to(device)
        with torch.no_grad():
            logits = (forward(w, batch) if forward is not None
                      else model(batch, use_cache=False).logits)[0, :-1]
        labels = batch[0, 1:].to(logits.device)
        if formula == "wanda":
            wanda_nlls.append(F.cross_entropy(logits, labels).float() * seqlen)
        else:
            total_nll += F.cross_entropy(logits.float(), labels, reduction="sum").double().item()
    if formula == "wanda":
        ppl = torch.exp(torch.stack(wanda_nlls).sum() / (windows * seqlen)).item()
    else:
        ppl = math.exp(total_nll / (windows * (seqlen - 1)))
    return Perplexity(ppl, windows, windows * (seqlen - 1))
