"""Recovery fine-tuning after pruning: LoRA adapters on the pruned Linears, trained on C4 windows
from documents the calibration did not use, then merged.

`lora` (default) trains what will be deployed: an adapted Linear computes with the effective
weight (W + s * B A) * M, M its pruning mask (the nonzeros of W after pruning) and s = alpha /
rank, so the loss sees the sparse model, and the merge W <- (W + s * B A) * M keeps every zero.
`lora_dense` is the Wanda repository's protocol (lora_ft): peft's LoRA layer, W x + s * B A x with
the adapter kept apart, so the evaluated model is dense; the results say so. The masked product is
not an additive adapter, which peft's layer is, so the default mode is a small torch module that
initialises as peft does (A Kaiming-uniform, B zero, no dropout).

Training is resumable: every `recover_every` steps the adapters, the optimizer and the losses
go to `recovery_<method>.ckpt` in --save (written whole); a run that finds a checkpoint of the
same configuration goes on from it, to the same final weights as an uninterrupted run (the
batches are drawn per step from the seed, not from a running generator).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from lib.recovery.plan import RecoveryPlan
from lib.run.errors import UserError


def adapted(linears: dict[str, nn.Linear], targets: tuple[str, ...]) -> dict[str, nn.Linear]:
    """The Linears to adapt; an unknown target is refused, naming what there is."""
    if not targets:
        return dict(linears)
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in linears})
    unknown = [t for t in targets if t not in suffixes]
    if unknown:
        raise UserError(f"--lora_targets {','.join(unknown)}: no pruned Linear is named so; "
                        f"this model has {','.join(suffixes)} (or use all)")
    return {n: m for n, m in linears.items() if n.rsplit(".", 1)[-1] in targets}


class MaskedLoRALinear(nn.Module):
    """A frozen Linear whose effective weight is (W + s * B A) * M, M the nonzeros of W."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base_layer = base
        self.scale = alpha / rank
        self.register_buffer("mask", base.weight.detach() != 0)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=torch.float32,
                                               device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=torch.float32,
                                               device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def get_base_layer(self) -> nn.Linear:  # the name peft's layers answer to
        return self.base_layer

    def delta(self) -> torch.Tensor:
        return (self.scale * (self.lora_B @ self.lora_A)).to(self.base_layer.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.base_layer.weight + self.delta() * self.mask
        return nn.functional.linear(x, weight, self.base_layer.bias)

    @torch.no_grad()
    def merged(self) -> torch.Tensor:
        """(W + s * B A) * M: the weight to deploy, with every zero of the mask."""
        return self.base_layer.weight + self.delta() * self.mask


def factors(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainable (A, B) of an adapted Linear, ours or peft's."""
    if isinstance(module, MaskedLoRALinear):
        return module.lora_A, module.lora_B
    return module.lora_A["default"].weight, module.lora_B["default"].weight


def attach(model: nn.Module, linears: dict[str, nn.Linear], plan: RecoveryPlan
           ) -> dict[str, nn.Module]:
    """Wrap each Linear (by its name in the model) in an adapter: masked (lora) or peft's LoRA
    layer (lora_dense). The adapters are then the model's only trainable parameters."""
    for param in model.parameters():
        param.requires_grad_(False)
    if plan.mode == "lora_dense":
        from peft import LoraConfig, inject_adapter_in_model

        inject_adapter_in_model(LoraConfig(r=plan.rank, lora_alpha=plan.alpha, lora_dropout=0.0,
                                           bias="none", target_modules=list(linears)), model)
        return {name: model.get_submodule(name) for name in linears}
    wrapped = {}
    for name, linear in linears.items():
        owner, _, leaf = name.rpartition(".")
        module = MaskedLoRALinear(linear, plan.rank, plan.alpha)
        setattr(model.get_submodule(owner), leaf, module)
        wrapped[name] = module
    return wrapped


def detach(model: nn.Module, wrapped: dict[str, nn.Module], merge: bool) -> None:
    """Put the plain Linears back, with the merged (masked) weights when `merge`."""
    for name, module in wrapped.items():
        base = module.get_base_layer()
        if merge:
            base.weight.data.copy_(module.merged())
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, base)


class Windows:
    """Training windows, drawn per step from the seed: batch `step` is the same whoever asks."""

    def __init__(self, documents: list[str], exclude: set[int], tokenizer, plan: RecoveryPlan):
        self.documents, self.tokenizer, self.plan = documents, tokenizer, plan
        self.pool = [i for i in range(len(documents)) if i not in exclude]
        self.cache: dict[int, torch.Tensor] = {}

    def _ids(self, i: int) -> torch.Tensor:
        if i not in self.cache:
            self.cache[i] = self.tokenizer(self.documents[i], return_tensors="pt").input_ids[0]
        return self.cache[i]

    def batch(self, step: int) -> torch.Tensor:
        rng = random.Random(f"recovery-{self.plan.seed}-{step}")
        rows = []
        for _ in range(100_000):
            ids = self._ids(rng.choice(self.pool))
            if ids.numel() > self.plan.seqlen:
                start = rng.randint(0, ids.numel() - self.plan.seqlen - 1)
                rows.append(ids[start:start + self.plan.seqlen])
                if len(rows) == self.plan.batch:
                    return torch.stack(rows)
        raise UserError(f"too few C4 documents longer than --recover_seqlen {self.plan.seqlen} "
                        "tokens outside the calibration set; lower --recover_seqlen")


def _checkpoint_path(save: str, method: str) -> Path:
    return Path(save) / f"recovery_{method}.ckpt"


def train(model: nn.Module, wrapped: dict[str, nn.Module], windows: Windows,
          plan: RecoveryPlan, save: str, method: str, config: dict) -> list[float]:
    """The training loop; returns the loss of every step (resumed ones included)."""
    from lib.io import writes

    params = [p for m in wrapped.values() for p in factors(m)]
    optimizer = torch.optim.AdamW(params, lr=plan.lr, weight_decay=0.0)
    losses: list[float] = []
    ckpt_path = _checkpoint_path(save, method)
    identity = {"config": config, "recovery": plan.record()}
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["identity"] == identity:
            for name, module in wrapped.items():
                for param, saved in zip(factors(module), state["adapters"][name]):
                    param.data.copy_(saved)
            optimizer.load_state_dict(state["optimizer"])
            losses = list(state["losses"])
    device = params[0].device
    progress = tqdm(range(len(losses), plan.steps), desc=f"recovery ({plan.mode})",
                    initial=len(losses), total=plan.steps)
    with torch.enable_grad():
        for step in progress:
            batch = windows.batch(step).to(device)
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.4f}")
            if (step + 1) % plan.every == 0 and step + 1 < plan.steps:
                state = {"identity": identity, "losses": losses,
                         "optimizer": optimizer.state_dict(),
                         "adapters": {n: tuple(p.data for p in factors(m))
                                      for n, m in wrapped.items()}}
                writes.atomic_write_bytes(ckpt_path, lambda f: torch.save(state, f))
                writes.kill_point(f"recovery_step_{step + 1}")
    return losses


def write_curve(save: str, method: str, losses: list[float]) -> dict:
    """recovery_<method>.csv (step, loss) and .png beside the results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lib.io import writes

    csv = Path(save) / f"recovery_{method}.csv"
    writes.atomic_write_text(csv, "step,loss\n" + "".join(f"{i + 1},{v:.6f}\n"
                                                          for i, v in enumerate(losses)))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(range(1, len(losses) + 1), losses, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (C4)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png = Path(save) / f"recovery_{method}.png"
    fig.savefig(png)
    plt.close(fig)
    return {"loss_csv": csv.name, "loss_png": png.name}


def recover(model: nn.Module, linears: dict[str, nn.Linear], windows: Windows,
            plan: RecoveryPlan, save: str, method: str, config: dict) -> tuple[dict, object]:
    """Train adapters on `linears` (names in the model); merge them (lora) or leave them in
    place (lora_dense). Returns the record and a callable that detaches the adapters."""
    wrapped = attach(model, adapted(linears, plan.targets), plan)
    start = time.perf_counter()
    losses = train(model, wrapped, windows, plan, save, method, config)
    seconds = time.perf_counter() - start
    record = {**plan.record(), "train_tokens": plan.steps * plan.batch * plan.seqlen,
              "adapted": len(wrapped), "seconds": round(seconds, 3),
              "first_loss": losses[0], "final_loss": losses[-1],
              "sparse": plan.mode == "lora", **write_curve(save, method, losses)}
    if plan.mode == "lora":
        detach(model, wrapped, merge=True)
        return record, lambda: None
    return record, lambda: detach(model, wrapped, merge=False)


def finish(save: str, method: str) -> None:
    """The run is complete: its checkpoint is not needed any more (it made it)."""
    _checkpoint_path(save, method).unlink(missing_ok=True)
