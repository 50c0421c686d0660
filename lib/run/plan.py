"""Everything a run decides before it loads anything heavy, without torch or transformers:
flags, method options, sparsity, model source and context, device and dtype, data files, the
save directory and whether its finished results already answer the run (--skip_if_done)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib.io import data, hub, sources, writes
from lib.pruning import layer_sparsity
from lib.pruning.methods import Method, all_options, method_named
from lib.pruning.sparsity import Sparsity, parse_sparsity
from lib.recovery.plan import RecoveryPlan, budget_part, plan_of
from lib.run import results
from lib.run.errors import UserError
from lib.run.options import Settings

MAX_DEFAULT_SEQLEN = 4096
DTYPE_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


@dataclass
class Plan:
    args: argparse.Namespace
    source: sources.ModelSource
    method_name: str
    method: Method  # DENSE when nothing is pruned
    sparsity: Sparsity
    settings: Settings
    layers: Settings  # lib/pruning/layer_sparsity.py's options: uniform or OWL
    seqlen: int
    device: str  # "cpu", "cuda", "cuda:N"
    dtype: str  # "float32", "float16", "bfloat16"
    save: str
    already_done: bool = False  # --skip_if_done found this configuration's finished results
    recovery: RecoveryPlan | None = None  # --recover: LoRA fine-tuning after pruning
    data_files: dict | None = None  # size and SHA-256 of the offline files the run reads
    zero_shot: Any = field(default=None, repr=False)  # lib.evaluation.zeroshot.ZeroShotPlan, when asked

    @property
    def prunes(self) -> bool:
        return self.method.prunes

    @property
    def needs_calibration(self) -> bool:
        """A statistic to gather, or OWL's dense pass to measure."""
        return self.prunes and (self.method.statistic is not None
                                or self.layers.layer_sparsity != "uniform")


def _validate_flags(args: argparse.Namespace) -> None:
    zero_shot_flags = [flag for flag, value in (
        ("--tasks", args.tasks), ("--tasks_include_path", args.tasks_include_path),
        ("--zero_shot_limit", args.zero_shot_limit)) if value is not None]
    checks = [
        (not (zero_shot_flags and not args.eval_zero_shot),
         f"{zero_shot_flags[0] if zero_shot_flags else ''} needs --eval_zero_shot"),
        (args.zero_shot_limit is None or args.zero_shot_limit >= 1,
         f"--zero_shot_limit {args.zero_shot_limit}: need at least 1 example"),
        (args.zero_shot_batch_size >= 1,
         f"--zero_shot_batch_size {args.zero_shot_batch_size} must be >= 1"),
        (args.tasks_include_path is None or os.path.isdir(args.tasks_include_path),
         f"--tasks_include_path {args.tasks_include_path} is not a directory"),
        (args.nsamples >= 1, f"--nsamples {args.nsamples}: need at least 1 calibration sample"),
        (args.seqlen is None or args.seqlen >= 2,
         f"--seqlen {args.seqlen}: need at least 2 tokens per window"),
        (args.eval_windows is None or args.eval_windows >= 1,
         f"--eval_windows {args.eval_windows}: need at least 1 window"),
        (not (args.offload and args.eval_zero_shot),
         "--eval_zero_shot needs the whole model in memory; drop --offload, or run zero-shot on "
         "the --save_model output afterwards"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _method(args: argparse.Namespace, sparsity: Sparsity) -> tuple[str, Method, Settings]:
    """The method and its settings; the method refuses what does not apply to it."""
    method = method_named(args.prune_method)
    given = {o.name: getattr(args, o.name) for o in all_options()}
    return method.name, method, method.validate(given, sparsity, args.save_stats)


def _layers(args: argparse.Namespace, sparsity: Sparsity, method: Method) -> Settings:
    layers = layer_sparsity.settings({o.name: getattr(args, o.name)
                                      for o in layer_sparsity.OPTIONS})
    layer_sparsity.check(layers, sparsity)
    if layers.layer_sparsity != "uniform" and not method.prunes:
        raise UserError(f"--layer_sparsity {layers.layer_sparsity} needs a --prune_method and a "
                        "--sparsity_ratio above 0")
    return layers


def resolve_device(flag: str) -> str:
    """The device a run will use, without torch where the answer is certain: no NVIDIA driver
    means no CUDA. With a driver, torch decides (imported here, for --device auto only)."""
    driver = Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
    if flag.startswith("cuda") and not driver:
        raise UserError(f"--device {flag}: CUDA is not available here (no NVIDIA driver); "
                        "use --device cpu")
    if flag != "auto":
        return flag
    if not driver:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(flag: str, device: str) -> str:
    if flag == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    return flag


def _seqlen(args: argparse.Namespace, source: sources.ModelSource) -> int:
    if source.kind == "hub" and not hub.reachable() and \
            sources.context_length(source, args.cache_dir) is None:
        raise UserError(f"--model {args.model}: the Hugging Face Hub is unreachable and the "
                        "model is not in the local cache; pass a local model directory, a "
                        ".gguf file or an alias")
    limit = sources.context_length(source, args.cache_dir)
    if args.seqlen is None:
        if limit is None:
            raise UserError("the model config gives no context length: pass --seqlen")
        return min(limit, MAX_DEFAULT_SEQLEN)
    if limit is not None and args.seqlen > limit:
        raise UserError(f"--seqlen {args.seqlen} is larger than the model's context of {limit} "
                        "tokens")
    return args.seqlen


def setting_parts(values: dict, seed: int | None = None) -> list[str]:
    """The name parts of what, besides the method and the seed, changes a run's numbers
    (calibration, evaluation windows, dtype and the switches off their default), with the seed
    after the calibration when given. Main.py's save directories and the sweeps' trees both
    name their folders with these."""
    evals = values["eval_windows"] if values["eval_windows"] is not None else "all"
    parts = [f"{values['calib_dataset']}-{values['nsamples']}x{values['seqlen']}"]
    if seed is not None:
        parts.append(f"seed{seed}")
    parts += [f"eval{evals}", DTYPE_SHORT.get(values["dtype"], values["dtype"])]
    if values["use_variant"]:
        parts.append("variant")
    if values["ppl_formula"] != "exact":
        parts.append(f"ppl-{values['ppl_formula']}")
    if values["moe_calibration"] != "routed":
        parts.append(f"moe-{values['moe_calibration']}")
    if values.get("recovery"):
        parts.append(budget_part(values["recovery"]))
    return parts


def budget_tag(record: dict, method: Method) -> str:
    """The default save directory's last part: every configuration key that a file name and
    the model/pattern folders do not already hold, so that runs that differ never collide."""
    parts = setting_parts(record, record["seed"])
    if record["layer_sparsity"]:
        owl = record["layer_sparsity"]
        parts.append(f"{owl['layer_sparsity']}-m{owl['owl_m']:g}-lambda{owl['owl_lambda']:g}")
    for option in method.options:
        value = record["method_options"].get(option.name, method.default(option))
        if value != method.default(option):
            parts.append(f"{option.name}={value:g}" if isinstance(value, float)
                         else f"{option.name}={value}")
    return "_".join(str(p) for p in parts)


def default_save_dir(source: sources.ModelSource, sparsity: Sparsity, record: dict,
                     method: Method) -> str:
    kind = sparsity.type_name.replace(":", "-")
    return f"out/{source.short_name}/{kind}_{sparsity.ratio:g}/{budget_tag(record, method)}"


def new_record(plan: Plan) -> dict:
    args = plan.args
    return {
        "model": args.model, "method": plan.method_name,
        "sparsity_type": plan.sparsity.type_name, "sparsity_ratio": plan.sparsity.ratio,
        "use_variant": plan.sparsity.variant, "nsamples": args.nsamples, "seed": args.seed,
        "seqlen": plan.seqlen, "calib_dataset": args.calib_dataset,
        "eval_windows": args.eval_windows, "dtype": plan.dtype,
        "ppl_formula": args.ppl_formula,
        "method_options": {o.name: plan.settings[o.name] for o in plan.method.declared_options},
        "layer_sparsity": layer_sparsity.config_of(plan.layers),
        "moe_calibration": args.moe_calibration,
        "device": plan.device, "offload": args.offload, "data_dir": args.data_dir,
        "model_source": plan.source.kind, "run_name": args.run_name, "status": "started",
        "data_files": plan.data_files,
        "recovery": plan.recovery.record() if plan.recovery else None,
    }


def _recovery(plan: Plan) -> RecoveryPlan | None:
    """--recover's plan; it needs the whole model in memory, C4 to train on, and a mask: a
    pruning method, or a model this tool saved pruned."""
    args = plan.args
    recovery = plan_of(args, plan.seqlen)
    if recovery is None:
        return None
    if args.offload:
        raise UserError("--recover trains the whole model in memory; drop --offload")
    if not plan.prunes and not (plan.source.kind == "dir"
                                and writes.is_ours(Path(plan.source.path))):
        raise UserError("--recover needs pruning masks: give --prune_method and a ratio, or as "
                        "--model a pruned model saved by this tool (--save_model)")
    if args.data_dir is not None:
        data.c4_offline_file(args.data_dir)
    return recovery


def _calibration(plan: Plan) -> str | None:
    return plan.args.calib_dataset if plan.needs_calibration else None


def plan_run(args: argparse.Namespace) -> Plan:
    """Validate flags, model context, device, data files and the save directory; decide
    --skip_if_done. Reads no weights and imports neither torch nor transformers (except torch
    for --device auto on a machine with an NVIDIA driver)."""
    _validate_flags(args)
    sparsity = parse_sparsity(args.sparsity_type, args.sparsity_ratio, args.use_variant)
    method_name, method, settings = _method(args, sparsity)
    layers = _layers(args, sparsity, method)
    device = resolve_device(args.device)
    plan = Plan(args, sources.resolve_model(args.model), method_name, method, sparsity, settings,
                layers, 0, device, resolve_dtype(args.dtype, device), "")
    data.check_data_files(args.data_dir, _calibration(plan), evaluate=True)
    if args.data_dir is None or (args.eval_zero_shot and args.tasks_include_path is None):
        hub.reachable()  # decides offline mode before any Hub client starts retrying
    plan.seqlen = _seqlen(args, plan.source)
    plan.recovery = _recovery(plan)
    plan.data_files = data.data_files(args.data_dir, _calibration(plan), plan.recovery is not None)
    record = new_record(plan)
    plan.save = args.save or default_save_dir(plan.source, sparsity, record, method)
    config = results.config_of(record)
    needs = ("zero_shot",) if args.eval_zero_shot else ()
    if args.skip_if_done and results.finished(plan.save, method_name, config, needs,
                                              plan.data_files):
        plan.already_done = True
        return plan
    _claim_outputs(plan, config, needs)
    return plan


def _input_folders(source: sources.ModelSource) -> list[str]:
    """Folders holding the input model's files, which --save_model must never replace."""
    folders = [source.path] if source.kind in ("dir", "gguf") else []
    return folders + ([source.converted] if source.converted else [])


def _claim_outputs(plan: Plan, config: dict, needs: tuple[str, ...]) -> None:
    """Check that the outputs can be written and are ours to replace, then lock them for the
    run's life (lib/io/writes.py); the configuration check runs under the lock, so a run started
    beside this one cannot slip in between."""
    args = plan.args
    writes.check_writable(plan.save, "--save")
    if args.save_model:
        writes.check_model_target(args.save_model, _input_folders(plan.source), args.overwrite)
    writes.lock_results_dir(plan.save)
    if args.save_model:
        writes.lock_model_dir(args.save_model)
    if args.skip_if_done and results.finished(plan.save, plan.method_name, config, needs,
                                              plan.data_files):
        plan.already_done = True
        return
    results.check_save_dir(plan.save, plan.method_name, config, args.overwrite)
