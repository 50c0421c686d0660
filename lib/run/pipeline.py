"""One planned run of the CLI (lib/run/plan.py): the checks that need torch, then the data before the
model (a missing dataset fails before any weights load), then load, prune, check, save,
evaluate, record."""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch

from lib.arch import matrices
from lib.arch.blocks import decoder_layers
from lib.evaluation import zeroshot
from lib.evaluation import progress
from lib.evaluation.perplexity import perplexity
from lib.io import checkpoint, data, models, offload, safetensors_io, writes
from lib.pruning import layer_sparsity
from lib.pruning.prune import prune_model, sparsity_by_block
from lib.pruning.replay import BlockWalk
from lib.run import machine, results
from lib.run.errors import UserError
from lib.run.plan import Plan, new_record

log = logging.getLogger(__name__)


def save_stats(stats: dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    save_file(stats, path)


def prune_phase(plan: Plan, model, tokenizer, samples, record: dict,
                streamed: offload.OffloadedModel | None = None,
                made: list[Path] | None = None) -> None:
    """Prune; record time (OWL's dense pass if asked, then capture, statistics, scores, masks
    and both passes of every block; not loading or sampling the data, but loading the blocks
    with --offload), peak memory and sparsity; save stats and model. Folders this run makes
    and must remove are appended to `made`."""
    args, device = plan.args, torch.device(plan.device)
    stats = {} if args.save_stats else None
    writer = None
    if streamed is not None and (args.save_model or plan.prunes):
        # the pruned blocks go to disk as they are released; evaluation reads them back
        writer = safetensors_io.ShardWriter(args.save_model or offload_scratch(plan))
        if not args.save_model and made is not None:
            made.append(writer.folder)
    store = streamed.store(writer) if streamed else None
    machine.reset_peak_memory(device)
    start = time.perf_counter()
    moe = args.moe_calibration
    layers = layer_sparsity.plan_blocks(plan.layers, plan.sparsity, model, samples,
                                        streamed.store() if streamed else None, moe)
    routed: list[list[int]] = []
    if plan.prunes:
        routed = prune_model(model, plan.method, layers.targets, samples, plan.settings, stats,
                             store, moe)
    elif store is not None:  # dense: every block still passes through (count, copy)
        for _ in BlockWalk(model, None, store=store, desc="dense blocks"):
            pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    record["prune_seconds"] = round(time.perf_counter() - start, 3)
    record["peak_memory_bytes"] = machine.peak_memory_bytes(device)

    actual, per_block = streamed.sparsity() if streamed else sparsity_by_block(model)
    for i, fraction in enumerate(per_block):
        log.info("layer %d sparsity %.6f", i, fraction)
    log.info("sparsity sanity check %.4f", actual)
    record.update(actual_sparsity=actual, sparsity_per_layer=per_block, **layers.record(),
                  **matrices.model_record(decoder_layers(model)),
                  **matrices.routed_record(routed), status="pruned")
    # a finished record of this same configuration stays until this run's own result replaces
    # it (unless a model is saved: the record must then name the model on disk)
    if args.save_model or not results.finished(plan.save, plan.method_name,
                                               results.config_of(record)):
        results.write_results(plan.save, plan.method_name, record)
    if stats is not None:
        save_stats(stats, args.save_stats)
        log.info("saved %d statistics tensors to %s", len(stats), args.save_stats)
    if plan.recovery is not None:  # the model saved is the recovered one (recovery_phase)
        return
    manifest = None
    if writer is not None:
        if args.save_model:
            streamed.save_resident(writer, tokenizer)
            manifest = writes.publish(writer.folder, args.save_model, results.config_of(record))
        else:
            writer.finish()
        streamed.read_blocks_from(args.save_model or writer.folder)
    elif args.save_model:
        manifest = models.save_model(model, tokenizer, args.save_model,
                                     results.config_of(record))
    if manifest is not None:
        # only now does the results file name a saved model: the one on disk
        _record_save(record, args.save_model, manifest)
        results.write_results(plan.save, plan.method_name, record)
        log.info("saved pruned model to %s", args.save_model)


def _record_save(record: dict, folder: str, manifest: dict) -> None:
    record["saved_model"] = {"path": folder, "files": len(manifest["files"]),
                             "weights_sha256": manifest["weights_sha256"]}


def offload_scratch(plan: Plan) -> str:
    """Beside what --offload keeps the pruned blocks without --save_model (in a temporary
    folder of the run's own, removed after the run)."""
    return os.path.join(plan.save, "offload_pruned_blocks")


def recovery_phase(plan: Plan, model, tokenizer, ids: torch.Tensor, record: dict) -> None:
    """LoRA recovery (lib/recovery/lora.py) on the pruned model, on C4 documents its calibration did
    not use; then perplexity again, the sparsity checked, and the recovered model saved."""
    from lib.recovery import lora as recovery

    args, device = plan.args, torch.device(plan.device)
    documents = data.c4_documents(args.data_dir)
    windows = recovery.Windows(documents, _calibration_documents(plan, documents, tokenizer),
                               tokenizer, plan.recovery)
    linears = matrices.model_linears(model)
    record["status"] = "recovering"
    results.write_results(plan.save, plan.method_name, record)
    machine.reset_peak_memory(device)
    rec, undo = recovery.recover(model, linears, windows, plan.recovery, plan.save,
                                 plan.method_name, results.config_of(record))
    rec["peak_memory_bytes"] = machine.peak_memory_bytes(device)
    if plan.recovery.mode == "lora":
        actual, _ = sparsity_by_block(model)
        if actual != record["actual_sparsity"]:
            raise RuntimeError(f"recovery changed the sparsity: {record['actual_sparsity']} -> "
                               f"{actual}")
        rec["actual_sparsity_after"] = actual
    model.eval()
    after = perplexity(model, ids, plan.seqlen, args.eval_windows, args.ppl_formula,
                       progress=window_log(plan, model, ids))
    undo()
    rec.update(ppl_before=record["ppl_test"], ppl_after=after.ppl)
    record.update(recovery=rec, ppl_recovered=after.ppl)
    print(f"wikitext perplexity after recovery {after.ppl}", flush=True)
    if args.save_model:
        _record_save(record, args.save_model,
                     models.save_model(model, tokenizer, args.save_model,
                                       results.config_of(record)))
    record["status"] = "done"
    results.write_results(plan.save, plan.method_name, record)
    recovery.finish(plan.save, plan.method_name)


def _calibration_documents(plan: Plan, documents: list[str], tokenizer) -> set[int]:
    """The C4 documents the pruning calibrated on, by replaying its sampler: this run's, or,
    for a saved model, the run that saved it (its marker holds that configuration)."""
    config = vars(plan.args)
    if not plan.prunes:
        config = json.loads((Path(plan.source.path) / writes.MARKER).read_text())
    used: set[int] = set()
    if config.get("calib_dataset") == "c4" and config.get("nsamples"):
        data.c4_windows(documents, tokenizer, config["nsamples"], config["seed"],
                        config["seqlen"] or plan.seqlen, used)
    return used


def window_log(plan: Plan, model, ids: torch.Tensor,
               streamed: offload.OffloadedModel | None = None) -> progress.WindowLog:
    """Where this evaluation's finished windows are kept (in --save), keyed by what they
    depend on, so that a rerun after a crash resumes."""
    start = time.perf_counter()
    weights = streamed.named_weights() if streamed else model.named_parameters()
    config = (streamed.model if streamed else model).config
    key = {"weights_sha256": progress.weights_digest(weights),
           "config_sha256": progress.config_digest(config),
           "attention": getattr(config, "_attn_implementation", None), "seqlen": plan.seqlen,
           "formula": plan.args.ppl_formula, "tokens_sha256": progress.tokens_digest(ids),
           **progress.compute_key(torch.device(plan.device))}
    log.info("weights digest %s (%.1f s)", key["weights_sha256"][:16],
             time.perf_counter() - start)
    return progress.WindowLog(plan.save, key)


def evaluate_phase(plan: Plan, model, ids: torch.Tensor, record: dict,
                   streamed: offload.OffloadedModel | None = None) -> None:
    args = plan.args
    progress_log = window_log(plan, model, ids, streamed)
    start = time.perf_counter()
    forward = None
    if streamed is not None:
        count = min(ids.shape[1] // plan.seqlen, args.eval_windows or ids.shape[1])
        forward = streamed.window_logits(ids, plan.seqlen, count)
    result = perplexity(model, ids, plan.seqlen, args.eval_windows, args.ppl_formula, forward,
                        progress_log)
    record.update(ppl_test=result.ppl, eval_windows_used=result.windows,
                  eval_tokens=result.predicted_tokens, eval_windows_resumed=result.resumed,
                  eval_seconds=round(time.perf_counter() - start, 3),
                  status="done" if plan.recovery is None else "evaluated")
    print(f"wikitext perplexity {result.ppl}", flush=True)
    path = results.write_results(plan.save, plan.method_name, record)  # the log never leads it
    results.write_wanda_log(plan.save, plan.method_name, record["actual_sparsity"], result.ppl)
    log.info("results written to %s", path)


def zero_shot_phase(plan: Plan, model, tokenizer, record: dict) -> None:
    summary = zeroshot.evaluate(model, tokenizer, plan.zero_shot, torch.device(plan.device))
    print(zeroshot.format_table(summary), flush=True)
    path = results.write_json(plan.save, f"zero_shot_{plan.method_name}.json",
                              {"method": plan.method_name, "model": plan.args.model, **summary})
    record["zero_shot"] = {"mean_acc": summary["mean_acc"], "file": os.path.basename(path),
                           "acc": {t: row["acc"] for t, row in summary["tasks"].items()}}
    results.write_results(plan.save, plan.method_name, record)
    log.info("zero-shot results written to %s", path)


def load_data(plan: Plan, tokenizer) -> tuple[list[torch.Tensor] | None, torch.Tensor]:
    """Calibration windows (when the method calibrates) and the WikiText-2 test stream."""
    args = plan.args
    samples = None
    if plan.needs_calibration:
        samples = data.calibration_windows(args.calib_dataset, tokenizer, args.nsamples,
                                           args.seed, plan.seqlen, args.data_dir)
    ids = data.wikitext_test_ids(tokenizer, args.data_dir)
    if ids.shape[1] < plan.seqlen:
        raise UserError(f"the WikiText-2 test text has fewer than --seqlen {plan.seqlen} tokens")
    return samples, ids


def run(plan: Plan) -> int:
    args = plan.args
    device = torch.device(plan.device)
    models.check_device(device)
    models.check_architecture(plan.source, args.cache_dir, plan.prunes)
    if args.eval_zero_shot:  # loads the task data now: fail before the pruning, not after
        plan.zero_shot = zeroshot.prepare(zeroshot.parse_tasks(args.tasks),
                                          args.tasks_include_path, args.zero_shot_limit,
                                          args.zero_shot_batch_size)
    record = new_record(plan)
    log.info("model %s | method %s | sparsity %s %.4g | seqlen %d | nsamples %d | device %s | "
             "dtype %s | save %s", args.model, plan.method_name, plan.sparsity.type_name,
             plan.sparsity.ratio, plan.seqlen, args.nsamples, plan.device, plan.dtype, plan.save)
    torch.manual_seed(args.seed)
    tokenizer = models.load_tokenizer(plan.source, args.cache_dir)
    samples, test_ids = load_data(plan, tokenizer)
    dtype = getattr(torch, plan.dtype)
    streamed = None
    if args.offload:
        streamed = offload.OffloadedModel(checkpoint.checkpoint_dir(plan.source, args.cache_dir),
                                          dtype, device)
        model = streamed.model
    else:
        model = models.load_model(plan.source, dtype, device, args.cache_dir)
    if plan.recovery is not None:  # an unknown --lora_targets is refused before any pruning
        from lib.recovery.lora import adapted

        adapted(matrices.model_linears(model), plan.recovery.targets)
    record["versions"] = results.versions()
    record["machine"] = machine.machine_record(device)
    made: list[Path] = []
    try:
        prune_phase(plan, model, tokenizer, samples, record, streamed, made)
        evaluate_phase(plan, model, test_ids, record, streamed)
        if plan.recovery is not None:
            recovery_phase(plan, model, tokenizer, test_ids, record)
    finally:
        for folder in made:  # this run's own scratch folders, nothing else
            shutil.rmtree(folder, ignore_errors=True)
    if plan.zero_shot is not None:
        zero_shot_phase(plan, model, tokenizer, record)
    return 0
