"""WikiText-2 perplexity over non-overlapping windows (zero-shot accuracy: lib/evaluation/zeroshot.py)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lib.evaluation.progress import WindowLog

log = logging.getLogger(__name__)

PPL_FORMULAS = ("exact", "wanda")


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    windows: int
    predicted_tokens: int
    resumed: int = 0  # windows taken from the progress file, not run


def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int, max_windows: int | None = None,
               formula: str = "exact", forward=None,
               progress: WindowLog | None = None) -> Perplexity:
    """Perplexity over the first `max_windows` windows of `seqlen` tokens (tail dropped).
    `forward(w, batch)` gives window w's logits (default: the model's forward; --offload
    streams the blocks instead). With `progress`, windows it already holds are not run again
    and every finished window is added to it (lib/evaluation/progress.py).

    "exact": exp(total NLL / total predicted tokens), NLL summed in float64.
    "wanda": the Wanda repository's formula, exp(sum_w mean_loss_w * seqlen / (W * seqlen)),
    summed in float32. Every window predicts seqlen-1 tokens, so both are the same number up to
    rounding; the flag exists so published numbers can be compared like for like.
    """
    import torch  # here, not at the top: the CLI reads PPL_FORMULAS without torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from lib.arch.blocks import input_device
    from lib.io.writes import kill_point

    windows = ids.shape[1] // seqlen
    if max_windows is not None:
        windows = min(windows, max_windows)
    if windows == 0:
        raise ValueError(f"the evaluation text has fewer than {seqlen} tokens")
    device = input_device(model)
    # per window: its summed NLL ("exact"), or its float32 mean loss * seqlen ("wanda")
    values = list(progress.values[:windows]) if progress is not None else []
    resumed = len(values)
    if resumed:
        log.info("evaluation resumes after %d finished windows of %d (%s)", resumed, windows,
                 progress.path)
    for w in tqdm(range(len(values), windows), desc="wikitext2 ppl", initial=len(values),
                  total=windows):
        batch = ids[:, w * seqlen:(w + 1) * seqlen].to(device)
        with torch.no_grad():
            logits = (forward(w, batch) if forward is not None
                      else model(batch, use_cache=False).logits)[0, :-1]
        labels = batch[0, 1:].to(logits.device)
        if formula == "wanda":
            value = (F.cross_entropy(logits, labels).float() * seqlen).item()
        else:
            value = F.cross_entropy(logits.float(), labels, reduction="sum").double().item()
        values.append(value)
        if progress is not None:
            progress.append(value)
            kill_point(f"eval_window_{w + 1}")
    if formula == "wanda":
        # on the evaluation's device, where the Wanda repository stacks and sums its losses
        summed = torch.tensor(values, dtype=torch.float32, device=device).sum()
        ppl = torch.exp(summed / (windows * seqlen)).item()
    else:
        total_nll = 0.0
        for value in values:  # in window order, as the sum has always been taken
            total_nll += value
        ppl = math.exp(total_nll / (windows * (seqlen - 1)))
    return Perplexity(ppl, windows, windows * (seqlen - 1), resumed)
