"""Collect the recovery study (issue 32): copy each finished run's small files here and write
summary.md, the ranking of methods before and after LoRA recovery, paired over seeds.

For every method: perplexity before (pruned) and after (recovered, merged), the share of the gap
to the dense model that recovery closed, (before - after) / (before - dense), and the paired
difference to wanda before and after with its 95% t interval (same seeds, same calibration
sample, same recovery batches). Run from the repository root:
    .venv/bin/python docs/results/recovery_study/collect.py [OUT_ROOT]
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lib.sweeps.summary import mean_sd, t_interval  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = "smollm2-135m"
BASELINE = "wanda"
# The dense model at the same evaluation budget (first 32 WikiText-2 test windows of 512 tokens);
# dense does not depend on the calibration seed.
DENSE = HERE.parents[0] / "owl_ria_study" / MODEL / "dense" / "results_dense.json"
KEEP = ("results_*.json", "recovery_*.csv", "run.log")


def copy_finished(out: Path) -> None:
    """Copy the finished runs' records, loss curves and logs (never the checkpoints)."""
    for record in (out / MODEL).rglob("seed*/results_*.json"):
        if json.loads(record.read_text()).get("status") != "done":
            continue
        dest = HERE / record.parent.relative_to(out)
        dest.mkdir(parents=True, exist_ok=True)
        for pattern in KEEP:
            for f in record.parent.glob(pattern):
                shutil.copy2(f, dest / f.name)


def load() -> dict[tuple[str, str], dict[int, dict]]:
    """{(mode, method): {seed: record}} from the copied runs."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for record in sorted((HERE / MODEL).rglob("seed*/results_*.json")):
        r = json.loads(record.read_text())
        runs.setdefault((r["recovery"]["mode"], r["method"]), {})[r["seed"]] = r
    return runs


def _ms(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def _paired(runs: dict[int, dict], base: dict[int, dict], key: str) -> str:
    seeds = sorted(set(runs) & set(base))
    diffs = [runs[s][key] - base[s][key] for s in seeds]
    ci = t_interval(diffs)
    mean = sum(diffs) / len(diffs)
    lower = sum(d < 0 for d in diffs)
    return (f"{mean:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "")
            + f" ({lower}/{len(diffs)} lower)")


def table(runs: dict[tuple[str, str], dict[int, dict]], dense: float) -> list[str]:
    base = runs[("lora", BASELINE)]
    lines = ["| recovery | method | seeds | ppl pruned | ppl recovered | gap to dense closed "
             "| diff to wanda, pruned [95% CI] | diff to wanda, recovered [95% CI] "
             "| sparsity after merge | recovery s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (mode, method), seeds in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1] != BASELINE, kv[0][1])):
        recs = [seeds[s] for s in sorted(seeds)]
        before = [r["ppl_test"] for r in recs]
        after = [r["ppl_recovered"] for r in recs]
        closed = [(b - a) / (b - dense) for b, a in zip(before, after)]
        same_setting = mode == "lora" and method != BASELINE
        pruned = {r["actual_sparsity"] for r in recs}
        merged = {r["recovery"].get("actual_sparsity_after") for r in recs}
        spars = ("dense adapter (not sparse)" if None in merged else
                 " / ".join(f"{v:.7f}" for v in sorted(merged))
                 + (" (unchanged)" if merged == pruned else f" (pruned: {sorted(pruned)})"))
        secs = sum(r["recovery"]["seconds"] for r in recs) / len(recs)
        lines.append(
            f"| {mode} | {method} | {len(recs)} | {_ms(before)} | {_ms(after)} "
            f"| {100 * sum(closed) / len(closed):.1f}% "
            f"| {_paired(seeds, base, 'ppl_test') if same_setting else ''} "
            f"| {_paired(seeds, base, 'ppl_recovered') if same_setting else ''} "
            f"| {spars} | {secs:.0f} |")
    return lines


def per_seed(runs: dict[tuple[str, str], dict[int, dict]]) -> list[str]:
    lines = ["| recovery | method | seed | ppl pruned | ppl recovered | first / final loss |",
             "| --- | --- | --- | --- | --- | --- |"]
    for (mode, method), seeds in sorted(runs.items()):
        for seed, r in sorted(seeds.items()):
            rec = r["recovery"]
            lines.append(f"| {mode} | {method} | {seed} | {r['ppl_test']:.2f} "
                         f"| {r['ppl_recovered']:.2f} | {rec['first_loss']:.3f} / "
                         f"{rec['final_loss']:.3f} |")
    return lines


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/evidence/recovery")
    copy_finished(out)
    runs = load()
    dense = json.loads(DENSE.read_text())["ppl_test"]
    one = next(iter(runs[("lora", BASELINE)].values()))["recovery"]
    text = ["# Recovery study: does the ranking survive LoRA recovery? (SmolLM2-135M, 2:4)", "",
            f"Dense perplexity at this evaluation budget: {dense:.2f} "
            f"({DENSE.relative_to(HERE.parents[2])}).",
            f"Recovery: {one['steps']} steps x {one['batch']} C4 windows x {one['seqlen']} tokens "
            f"= {one['train_tokens']:,} training tokens, lr {one['lr']}, rank {one['rank']}, "
            f"alpha {one['alpha']}, targets {one['targets']}. Produced by run.sh, collected by "
            "collect.py; machine and timing in NOTES.md.", ""]
    text += table(runs, dense) + ["", "Per run:", ""] + per_seed(runs)
    (HERE / "summary.md").write_text("\n".join(text) + "\n")
    print((HERE / "summary.md").read_text())


if __name__ == "__main__":
    main()
