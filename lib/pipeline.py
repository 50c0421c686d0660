"""One run of the CLI: validate cheaply, load, prune, check, save, evaluate, record."""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass

import torch

from lib import data, models, results, zeroshot
from lib.errors import UserError
from lib.eval import perplexity
from lib.methods import DENSE, METHODS, Method, MethodOptions
from lib.prune import prune_model, sparsity_by_block
from lib.sparsity import Sparsity, parse_sparsity

log = logging.getLogger(__name__)


def default_save_dir(source: models.ModelSource, sparsity: Sparsity) -> str:
    kind = sparsity.type_name.replace(":", "-")
    return f"out/{source.short_name}/{kind}_{sparsity.ratio:g}"


def method_options(args: argparse.Namespace, method: Method | None = None) -> MethodOptions:
    """The selectivity options: flags the user set, else the method's defaults, else global ones."""
    defaults = dict(method.option_defaults) if method is not None else {}
    floor = args.selectivity_floor
    if floor is None:
        floor = defaults.get("selectivity_floor", 0.0)
    checks = [
        (0 < args.activity_quantile < 1, f"--activity_quantile {args.activity_quantile} must be "
                                         "in (0, 1)"),
        (0 < args.spike_top_frac <= 1, f"--spike_top_frac {args.spike_top_frac} must be in (0, 1]"),
        (args.idf_offset >= 0, f"--idf_offset {args.idf_offset} must be >= 0"),
        (args.idf_power >= 0, f"--idf_power {args.idf_power} must be >= 0"),
        (args.spiky_power >= 0, f"--spiky_power {args.spiky_power} must be >= 0"),
        (floor >= 0, f"--selectivity_floor {floor} must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return MethodOptions(args.activity_quantile, args.spike_top_frac, args.idf_offset,
                         args.idf_power, args.spiky_power, floor,
                         args.selectivity_stats)


def _validate(args: argparse.Namespace) -> tuple[Sparsity, str]:
    zero_shot_flags = [flag for flag, value in (
        ("--tasks", args.tasks), ("--tasks_include_path", args.tasks_include_path),
        ("--zero_shot_limit", args.zero_shot_limit)) if value is not None]
    if zero_shot_flags and not args.eval_zero_shot:
        raise UserError(f"{zero_shot_flags[0]} needs --eval_zero_shot")
    if args.zero_shot_limit is not None and args.zero_shot_limit < 1:
        raise UserError(f"--zero_shot_limit {args.zero_shot_limit}: need at least 1 example")
    if args.zero_shot_batch_size < 1:
        raise UserError(f"--zero_shot_batch_size {args.zero_shot_batch_size} must be >= 1")
    if args.tasks_include_path is not None and not os.path.isdir(args.tasks_include_path):
        raise UserError(f"--tasks_include_path {args.tasks_include_path} is not a directory")
    if args.nsamples < 1:
        raise UserError(f"--nsamples {args.nsamples}: need at least 1 calibration sample")
    if args.seqlen is not None and args.seqlen < 2:
        raise UserError(f"--seqlen {args.seqlen}: need at least 2 tokens per window")
    if args.eval_windows is not None and args.eval_windows < 1:
        raise UserError(f"--eval_windows {args.eval_windows}: need at least 1 window")
    sparsity = parse_sparsity(args.sparsity_type, args.sparsity_ratio, args.use_variant)
    method = args.prune_method or DENSE
    if method != DENSE and method not in METHODS:
        raise UserError(f"unknown --prune_method {method}; choose from "
                        f"{', '.join([DENSE, *METHODS])}")
    if method == DENSE and sparsity.ratio > 0:
        raise UserError("--sparsity_ratio/--sparsity_type need a --prune_method "
                        f"({', '.join(METHODS)})")
    if method in METHODS and (METHODS[method].scope != "row" or METHODS[method].update) \
            and sparsity.variant:
        raise UserError(f"--use_variant is for the zeroing row-wise methods (wanda and the "
                        f"selectivity methods); drop it for {method}")
    if args.save_stats and (method not in METHODS
                            or METHODS[method].statistic not in ("norm", "selectivity")
                            or sparsity.ratio == 0):
        raise UserError("--save_stats needs a pruning method that gathers statistics "
                        "(wanda or a selectivity method) and a sparsity above 0")
    return sparsity, method


@dataclass
class Plan:
    """Everything decided before any weights are loaded."""

    args: argparse.Namespace
    source: models.ModelSource
    method_name: str
    method: Method | None
    sparsity: Sparsity
    opts: MethodOptions
    seqlen: int
    device: torch.device
    dtype: torch.dtype
    save: str
    zero_shot: zeroshot.ZeroShotPlan | None = None
    already_done: bool = False  # --skip_if_done found this configuration's finished results

    @property
    def prunes(self) -> bool:
        return self.method is not None and self.sparsity.ratio > 0

    @property
    def needs_calibration(self) -> bool:
        return self.prunes and self.method.statistic is not None


def plan_run(args: argparse.Namespace) -> Plan:
    """Validate flags, model config, data files and the save directory: cheap, no weights."""
    sparsity, method_name = _validate(args)
    opts = method_options(args, METHODS.get(method_name))
    source = models.resolve_model(args.model)
    config = models.load_config(source, args.cache_dir)
    models.check_architecture(config)
    limit = getattr(config, "max_position_embeddings", None)
    seqlen = args.seqlen or models.default_seqlen(config)
    if limit is not None and seqlen > limit:
        raise UserError(f"--seqlen {seqlen} is larger than the model's context of {limit} tokens")
    device = models.resolve_device(args.device)
    plan = Plan(args, source, method_name, METHODS.get(method_name), sparsity, opts, seqlen,
                device, models.resolve_dtype(args.dtype, device),
                args.save or default_save_dir(source, sparsity))
    data.check_data_files(args.data_dir, args.calib_dataset if plan.needs_calibration else None,
                          evaluate=True)
    config = results.config_of(new_record(plan))
    needs = ("zero_shot",) if args.eval_zero_shot else ()
    if args.skip_if_done and results.finished(plan.save, method_name, config, needs):
        plan.already_done = True
        return plan
    results.check_save_dir(plan.save, method_name, config, args.overwrite)
    if args.eval_zero_shot:  # loads the task data now: fail before the pruning, not after
        plan.zero_shot = zeroshot.prepare(zeroshot.parse_tasks(args.tasks),
                                          args.tasks_include_path, args.zero_shot_limit,
                                          args.zero_shot_batch_size)
    return plan


def new_record(plan: Plan) -> dict:
    args = plan.args
    uses_selectivity = plan.method is not None and plan.method.statistic == "selectivity"
    return {
        "model": args.model, "method": plan.method_name,
        "sparsity_type": plan.sparsity.type_name, "sparsity_ratio": plan.sparsity.ratio,
        "use_variant": plan.sparsity.variant, "nsamples": args.nsamples, "seed": args.seed,
        "seqlen": plan.seqlen, "calib_dataset": args.calib_dataset,
        "eval_windows": args.eval_windows, "dtype": str(plan.dtype).removeprefix("torch."),
        "ppl_formula": args.ppl_formula,
        "method_options": plan.opts.as_dict() if uses_selectivity else {},
        "device": str(plan.device), "data_dir": args.data_dir,
        "model_source": plan.source.kind, "run_name": args.run_name, "status": "started",
    }


def save_stats(stats: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    save_file(stats, path)


def prune_phase(plan: Plan, model, tokenizer, record: dict) -> None:
    """Calibrate and prune; record time, peak memory and sparsity; save stats and model."""
    args = plan.args
    samples = None
    if plan.needs_calibration:
        samples = data.calibration_windows(args.calib_dataset, tokenizer, args.nsamples,
                                           args.seed, plan.seqlen, args.data_dir)
    stats = {} if args.save_stats else None
    results.reset_peak_memory(plan.device)
    start = time.perf_counter()
    if plan.prunes:
        prune_model(model, plan.method, plan.sparsity, samples, plan.opts, stats)
    if plan.device.type == "cuda":
        torch.cuda.synchronize()
    record["prune_seconds"] = round(time.perf_counter() - start, 3)
    record["peak_memory_bytes"] = results.peak_memory_bytes(plan.device)

    actual, per_block = sparsity_by_block(model)
    for i, fraction in enumerate(per_block):
        log.info("layer %d sparsity %.6f", i, fraction)
    log.info("sparsity sanity check %.4f", actual)
    record.update(actual_sparsity=actual, sparsity_per_layer=per_block, status="pruned")
    results.write_results(plan.save, plan.method_name, record)
    if stats is not None:
        save_stats(stats, args.save_stats)
        log.info("saved %d statistics tensors to %s", len(stats), args.save_stats)
    if args.save_model:
        models.save_model(model, tokenizer, args.save_model)
        log.info("saved pruned model to %s", args.save_model)


def evaluate_phase(plan: Plan, model, tokenizer, record: dict) -> None:
    ids = data.wikitext_test_ids(tokenizer, plan.args.data_dir)
    if ids.shape[1] < plan.seqlen:
        raise UserError(f"the WikiText-2 test text has fewer than --seqlen {plan.seqlen} tokens")
    start = time.perf_counter()
    result = perplexity(model, ids, plan.seqlen, plan.args.eval_windows, plan.args.ppl_formula)
    record.update(ppl_test=result.ppl, eval_windows_used=result.windows,
                  eval_tokens=result.predicted_tokens,
                  eval_seconds=round(time.perf_counter() - start, 3), status="done")
    print(f"wikitext perplexity {result.ppl}", flush=True)
    results.write_wanda_log(plan.save, plan.method_name, record["actual_sparsity"], result.ppl)
    path = results.write_results(plan.save, plan.method_name, record)
    log.info("results written to %s", path)


def zero_shot_phase(plan: Plan, model, tokenizer, record: dict) -> None:
    summary = zeroshot.evaluate(model, tokenizer, plan.zero_shot, plan.device)
    print(zeroshot.format_table(summary), flush=True)
    path = results.write_json(plan.save, f"zero_shot_{plan.method_name}.json",
                              {"method": plan.method_name, "model": plan.args.model, **summary})
    record["zero_shot"] = {"mean_acc": summary["mean_acc"], "file": os.path.basename(path),
                           "acc": {t: row["acc"] for t, row in summary["tasks"].items()}}
    results.write_results(plan.save, plan.method_name, record)
    log.info("zero-shot results written to %s", path)


def run(args: argparse.Namespace) -> int:
    plan = plan_run(args)
    if plan.already_done:
        print(f"skip: {results.results_path(plan.save, plan.method_name)} already holds this "
              "configuration's finished results", flush=True)
        return 0
    record = new_record(plan)
    log.info("model %s | method %s | sparsity %s %.4g | seqlen %d | nsamples %d | device %s | "
             "dtype %s | save %s", args.model, plan.method_name, plan.sparsity.type_name,
             plan.sparsity.ratio, plan.seqlen, args.nsamples, plan.device, record["dtype"],
             plan.save)
    torch.manual_seed(args.seed)
    tokenizer = models.load_tokenizer(plan.source, args.cache_dir)
    model = models.load_model(plan.source, plan.dtype, plan.device, args.cache_dir)
    record["versions"] = results.versions()
    prune_phase(plan, model, tokenizer, record)
    evaluate_phase(plan, model, tokenizer, record)
    if plan.zero_shot is not None:
        zero_shot_phase(plan, model, tokenizer, record)
    return 0
