"""Zero-shot evaluation of the model in memory with lm-evaluation-harness 0.4.

The Wanda repository pinned a patched harness and an API (`hf-causal-experimental`) that no
longer exist; here the pruned model object itself is wrapped by the harness's HFLM, so nothing
is reloaded from disk. Task datasets are loaded while the run is planned, before any pruning,
so a task that cannot be reached fails in seconds with one line, not after an hour of pruning.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from lib.run.errors import UserError

log = logging.getLogger(__name__)

# the seven tasks of the Wanda paper's zero-shot table
DEFAULT_TASKS = ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge",
                 "openbookqa")
METRICS = ("acc", "acc_norm")


@dataclass
class ZeroShotPlan:
    tasks: list[str]
    include_path: str | None
    limit: int | None
    batch_size: int
    manager: Any = field(default=None, repr=False)


def parse_tasks(text: str | None) -> list[str]:
    if text is None:
        return list(DEFAULT_TASKS)
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        raise UserError("--tasks is empty; give a comma-separated list such as boolq,rte")
    return tasks


def _offline_hint(task: str) -> str:
    return (f"offline, put a task YAML for {task} that reads local files (dataset_path: json, "
            "dataset_kwargs: {data_files: ...}) in a directory and pass --tasks_include_path DIR")


def prepare(tasks: list[str], include_path: str | None, limit: int | None,
            batch_size: int) -> ZeroShotPlan:
    """Check that lm-eval is installed, that every task exists, and that its data loads."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as err:
        raise UserError("--eval_zero_shot needs lm-eval 0.4: pip install 'lm-eval>=0.4,<0.5'") \
            from err
    manager = TaskManager(include_path=include_path)
    for task in tasks:
        if task not in manager.all_tasks:
            where = f" or in {include_path}" if include_path else ""
            raise UserError(f"unknown zero-shot task {task}: not among lm-eval's tasks{where}; "
                            "check the name, or add its YAML with --tasks_include_path DIR")
        try:
            _load_task(manager, task)
        except Exception as err:  # the harness surfaces network and file errors many ways
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else \
                type(err).__name__
            raise UserError(f"zero-shot task {task}: its dataset could not be loaded ({reason}); "
                            f"{_offline_hint(task)}") from err
    return ZeroShotPlan(tasks, include_path, limit, batch_size, manager)


def _load_task(manager, task: str) -> None:
    """Build the task, which downloads or reads its dataset now."""
    if hasattr(manager, "load"):  # lm-eval >= 0.4.10
        manager.load([task])
    else:
        from lm_eval.tasks import get_task_dict

        get_task_dict([task], manager)


def _metric(values: dict, name: str) -> float | None:
    value = values.get(f"{name},none")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def summarize(raw: dict, tasks: list[str]) -> dict[str, Any]:
    """Per task accuracy (and normalized accuracy where the task has it) with stderr, and the
    mean accuracy over tasks, from simple_evaluate's output."""
    table: dict[str, dict] = {}
    for task in tasks:
        values = raw["results"].get(task, {})
        row = {}
        for name in METRICS:
            row[name] = _metric(values, name)
            row[f"{name}_stderr"] = _metric(values, f"{name}_stderr")
        samples = raw.get("n-samples", {}).get(task, {})
        row["samples"] = samples.get("effective")
        table[task] = row
    accs = [row["acc"] for row in table.values() if row["acc"] is not None]
    return {"tasks": table, "mean_acc": sum(accs) / len(accs) if accs else None}


def format_table(summary: dict[str, Any]) -> str:
    def cell(value):
        return "-" if value is None else f"{value:.4f}"

    lines = [f"{'task':24s} {'acc':>8s} {'stderr':>8s} {'acc_norm':>9s} {'stderr':>8s} "
             f"{'n':>6s}"]
    for task, row in summary["tasks"].items():
        lines.append(f"{task:24s} {cell(row['acc']):>8s} {cell(row['acc_stderr']):>8s} "
                     f"{cell(row['acc_norm']):>9s} {cell(row['acc_norm_stderr']):>8s} "
                     f"{row['samples'] if row['samples'] is not None else '-':>6}")
    lines.append(f"{'mean acc':24s} {cell(summary['mean_acc']):>8s}")
    return "\n".join(lines)


def _drop_model_object_warning(record: logging.LogRecord) -> bool:
    """HFLM warns whenever it is handed a model object instead of a name; handing it the pruned
    model in memory is the point here, so that warning (which reads like an error) is dropped."""
    return "model kwarg is not of type" not in record.getMessage()


def evaluate(model, tokenizer, plan: ZeroShotPlan, device) -> dict[str, Any]:
    """Run the tasks zero-shot on `model` as it is in memory; returns the summary."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    hflm_log = logging.getLogger(HFLM.__module__)
    if _drop_model_object_warning not in hflm_log.filters:
        hflm_log.addFilter(_drop_model_object_warning)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=plan.batch_size,
              device=str(device))
    start = time.perf_counter()
    raw = lm_eval.simple_evaluate(model=lm, tasks=plan.tasks, num_fewshot=0, limit=plan.limit,
                                  task_manager=plan.manager, log_samples=False,
                                  bootstrap_iters=1000)
    summary = summarize(raw, plan.tasks)
    summary.update(seconds=round(time.perf_counter() - start, 3), limit=plan.limit,
                   num_fewshot=0, include_path=plan.include_path,
                   lm_eval_version=getattr(lm_eval, "__version__", None))
    return summary
