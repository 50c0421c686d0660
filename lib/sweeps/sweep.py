"""Method sweeps: run main.py once per entry, sparsity level and seed into one tree, resumably,
then summarize.

  python -m lib.sweeps.sweep MODEL [SPARSITY[,SPARSITY...]] [TYPE] [--methods ENTRIES] [--seeds 0,1,2]
                      [--out_root DIR] [--jobs N] [--backend local|ray] [-- main.py flags]

An entry is a method, or a method with options, each its own row:
  wanda_select:idf_power=0.25,spiky_power=0.5   wanda:layer_sparsity=owl   ria:ria_power=1
(keys: the method's options and the layer-wise sparsity options; see main.py --help). Each run
is its own process (a crash or out-of-memory in one leaves the others; --jobs N runs N at a
time, --backend ray makes each a Ray task: lib/sweeps/runner.py) and writes to
<out_root>/<model>/<budget>/<type>/<sparsity>/<entry>/ (with --seeds: .../<entry>/seed<k>/;
<budget> names calibration, evaluation windows and dtype) with a run.log; it
is skipped when that directory already holds its finished results for the same configuration
(main.py --skip_if_done). The seed changes only the calibration windows.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lib.io.sources import short_name
from lib.pruning.methods import BASELINE
from lib.run.errors import UserError
from lib.sweeps import runner, summary
from lib.sweeps.entries import Entry, parse_entry, parse_seeds, split_entries

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_METHODS = ("wanda", "wanda_idf", "wanda_spiky", "wanda_select")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="run_selectivity_experiments.sh", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("sparsity", nargs="?", default="0.5",
                   help="sparsity ratio, or several comma-separated (0.5,0.6,0.7)")
    p.add_argument("type", nargs="?", default="unstructured")
    p.add_argument("--methods", default=os.environ.get("METHODS", ",".join(DEFAULT_METHODS)),
                   help="comma- or space-separated entries (default: $METHODS, else "
                        f"{','.join(DEFAULT_METHODS)})")
    p.add_argument("--seeds", default=None,
                   help="comma-separated calibration seeds, e.g. 0,1,2,3,4 (default: 0 only)")
    p.add_argument("--out_root", default=None,
                   help="default out/<model-short-name>_selectivity")
    p.add_argument("--baseline", default=BASELINE,
                   help=f"method the summary compares against (default {BASELINE})")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time: each gets a GPU when there are any, else cores / N "
                        "threads (default 1)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="local processes, or Ray tasks (pip install ray; default local)")
    p.add_argument("--ray_address", default=None,
                   help="an existing Ray cluster (default: a local Ray instance)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: need at least 1")
    args.entries = [parse_entry(text) for text in split_entries(args.methods)]
    if not args.entries:
        raise UserError("--methods is empty")
    args.seed_list = parse_seeds(args.seeds) if args.seeds is not None else None
    args.levels = [level.strip() for level in args.sparsity.split(",") if level.strip()]
    if not args.levels:
        raise UserError("give a sparsity ratio such as 0.5, or several: 0.5,0.6,0.7")
    return args, extra


def budget_dir(model: str, extra: list[str]) -> str:
    """`<model>/<budget>`: everything besides the entry, pattern, level and seed that changes a
    run's numbers, named as main.py names it (lib/run/plan.py's setting_parts), so that sweeps of
    other budgets into one --out_root never share a folder or a summary."""
    from lib.recovery.plan import plan_of
    from lib.run.cli import build_parser
    from lib.run.plan import setting_parts

    flags = build_parser().parse_args(["--model", model, *extra])
    recovery = plan_of(flags, flags.seqlen or 0)
    values = {**vars(flags), "seqlen": flags.seqlen or "ctx",
              "recovery": recovery.record() if recovery else None}
    return f"{short_name(model)}/{'_'.join(setting_parts(values))}"


def planned_runs(args: argparse.Namespace,
                 root: Path) -> list[tuple[Entry, str, int, Path]]:
    """Seed by seed, every level and entry within a seed: a sweep cut short still leaves
    complete seeds, i.e. paired comparisons. `root` is the sweep's tree for one budget."""
    def group(level: str) -> Path:
        return root / args.type.replace(":", "-") / level
    if args.seed_list is None:
        return [(entry, level, 0, group(level) / entry.dirname)
                for level in args.levels for entry in args.entries]
    return [(entry, level, seed, group(level) / entry.dirname / f"seed{seed}")
            for seed in args.seed_list for level in args.levels for entry in args.entries]


def planned_jobs(args: argparse.Namespace, root: Path, extra: list[str]) -> list[runner.Job]:
    """One main.py command per planned run, each skipping itself when already finished."""
    jobs = []
    for entry, level, seed, save in planned_runs(args, root):
        name = entry.label + (f" at {level}" if len(args.levels) > 1 else "") \
            + (f" seed {seed}" if args.seed_list is not None else "")
        cmd = [sys.executable, str(ROOT / "main.py"), "--model", args.model, *entry.flags(),
               "--sparsity_ratio", level, "--sparsity_type", args.type,
               "--save", str(save), "--skip_if_done", *extra]
        if args.seed_list is not None:
            cmd += ["--seed", str(seed)]
        if entry.options:
            cmd += ["--run_name", entry.label]
        jobs.append(runner.Job(name, cmd, save / "run.log"))
    return jobs


def main(argv: list[str] | None = None) -> int:
    try:
        args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    top = Path(args.out_root or f"out/{short_name(args.model)}_selectivity")
    root = top / budget_dir(args.model, extra)
    group = root / args.type.replace(":", "-")
    if len(args.levels) == 1:
        group = group / args.levels[0]
    jobs = planned_jobs(args, root, extra)
    outcome: dict[str, str] = {}

    def report(job: runner.Job, result: runner.Outcome) -> None:
        outcome[job.name] = "skipped (finished results exist)" if result.skipped else (
            "done" if result.returncode == 0
            else f"FAILED (exit {result.returncode}, see {job.log})")
        print(f"=== {job.name}: {outcome[job.name]}", flush=True)
    try:
        if args.backend == "ray":
            runner.run_ray(jobs, ROOT, report, args.jobs, args.ray_address)
        elif args.jobs > 1:
            runner.run_parallel(jobs, ROOT, report, args.jobs)
        else:
            runner.run_sequential(jobs, ROOT, report)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table, text = summary.write_summary([group], group, args.baseline)
    summary.write_summary([root], root, args.baseline)
    print(f"\nsummary ({group}; also summary.csv, summary.md, ppl_vs_sparsity.png there):")
    print(text)
    failed = [name for name, state in outcome.items() if state.startswith("FAILED")]
    for name in failed:
        print(f"failed: {name}: {outcome[name]}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
