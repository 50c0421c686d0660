"""What a run decides about recovery fine-tuning before torch loads (lib/recovery/lora.py trains):
the mode, the flags' ranges, the targets, and what identifies the recovery in the results."""
from __future__ import annotations

from dataclasses import dataclass

from lib.run.errors import UserError

MODES = ("lora", "lora_dense")


@dataclass(frozen=True)
class RecoveryPlan:
    mode: str
    steps: int
    lr: float
    rank: int
    alpha: float
    targets: tuple[str, ...]  # Linear name suffixes; () = every pruned Linear
    batch: int
    seqlen: int
    every: int
    seed: int

    def record(self) -> dict:
        return {"mode": self.mode, "steps": self.steps, "lr": self.lr, "rank": self.rank,
                "alpha": self.alpha, "targets": list(self.targets) or "all",
                "batch": self.batch, "seqlen": self.seqlen, "seed": self.seed}


def check_flags(args) -> None:
    """The recovery flags' ranges, before anything runs."""
    checks = [(args.recover_steps >= 1, f"--recover_steps {args.recover_steps}: need >= 1"),
              (args.lora_rank >= 1, f"--lora_rank {args.lora_rank}: need >= 1"),
              (args.recover_lr > 0, f"--recover_lr {args.recover_lr}: need > 0"),
              (args.lora_alpha > 0, f"--lora_alpha {args.lora_alpha}: need > 0"),
              (args.recover_batch >= 1, f"--recover_batch {args.recover_batch}: need >= 1"),
              (args.recover_every >= 1, f"--recover_every {args.recover_every}: need >= 1"),
              (args.recover_seqlen is None or args.recover_seqlen >= 2,
               f"--recover_seqlen {args.recover_seqlen}: need >= 2")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if args.recover == "lora_dense" and args.save_model:
        raise UserError("--recover lora_dense keeps a dense adapter apart from the sparse model "
                        "and saves no model; drop --save_model or use --recover lora")


def targets_of(flag: str) -> tuple[str, ...]:
    return () if flag == "all" else tuple(t.strip() for t in flag.split(",") if t.strip())


def plan_of(args, seqlen: int) -> RecoveryPlan | None:
    """The run's recovery, validated; None without --recover."""
    if args.recover is None:
        return None
    check_flags(args)
    return RecoveryPlan(args.recover, args.recover_steps, args.recover_lr, args.lora_rank,
                        args.lora_alpha, targets_of(args.lora_targets), args.recover_batch,
                        args.recover_seqlen or seqlen, args.recover_every, args.seed)


def budget_part(record: dict | None) -> str | None:
    """The default save directory's name for a recovery (None without one)."""
    if not record:
        return None
    targets = record["targets"] if record["targets"] == "all" else "+".join(record["targets"])
    return (f"recover-{record['mode']}-{record['steps']}x{record['batch']}x{record['seqlen']}"
            f"-lr{record['lr']:g}-r{record['rank']}-a{record['alpha']:g}-{targets}")
