"""Summaries of any tree of results_*.json: a comparison table (printed, CSV, markdown) and a
perplexity-vs-sparsity plot."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
from pathlib import Path

from lib.pruning.methods import BASELINE, DENSE
from lib.run.results import CONFIG_DEFAULTS, CONFIG_KEYS

FIELDS = ("method", "sparsity_type", "sparsity_ratio", "actual_sparsity", "ppl_test",
          "vs_baseline_pct", "prune_seconds", "seeds", "ppl_sd", "diff_mean", "diff_ci_low",
          "diff_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high", "lower_on", "verdict",
          "nsamples", "seqlen", "eval_windows_used", "setting")
PAIRED = ("diff_mean", "diff_ci_low", "diff_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
          "lower_on", "verdict")


def load_results(roots: list[str | Path], left_out: list[Path] | None = None) -> list[dict]:
    """Every results_*.json under the roots, with its path (runs still going or not evaluated
    have no ppl_test and count for nothing but their presence). Files that are not readable
    records are named on stderr and appended to `left_out`."""
    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("*results_*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not isinstance(record, dict):  # named, never silently dropped
                print(f"warning: left out {path}: not a readable results record",
                      file=sys.stderr)
                if left_out is not None:
                    left_out.append(path)
                continue
            record["path"] = str(path)
            rows.append(record)
    return rows


# what makes two runs of one label different entries
ENTRY_KEYS = ("method_options", "layer_sparsity", "moe_calibration", "recovery")
# every other configuration key but the method, pattern, level and seed (lib/run/results.py): runs
# that differ in any of these are never pooled or paired; a tree holding several settings gives
# one table each
SETTING_KEYS = tuple(k for k in CONFIG_KEYS if k not in ENTRY_KEYS
                     and k not in ("method", "sparsity_type", "sparsity_ratio", "seed"))


def _config_value(row: dict, key: str) -> str:
    """A configuration value, comparable; keys a record predates read as their default, so runs
    of one study written before and after a key existed stay together."""
    return json.dumps(row.get(key, CONFIG_DEFAULTS.get(key)), sort_keys=True)


def setting_of(row: dict) -> str:
    """The table a run belongs to, as a readable line."""
    evals = row.get("eval_windows") or "all"
    text = (f"{row.get('model')}, {row.get('calib_dataset')} {row.get('nsamples')} x "
            f"{row.get('seqlen')}, eval {evals} windows, {row.get('dtype')}")
    if row.get("ppl_formula") not in (None, "exact"):
        text += f", ppl {row['ppl_formula']}"
    return text + (", variant" if row.get("use_variant") else "")


def _group_key(row: dict) -> tuple:
    return (tuple(_config_value(row, k) for k in SETTING_KEYS),
            0 if row.get("sparsity_type") == "unstructured" else 1,
            str(row.get("sparsity_type")), float(row.get("sparsity_ratio") or 0))


def pattern_label(sparsity_type: str, ratio: float) -> str:
    """"50% unstructured", or the N:M pattern alone (its ratio is fixed by N and M)."""
    return f"{ratio:.0%} unstructured" if sparsity_type == "unstructured" else sparsity_type


def label_of(row: dict) -> str:
    """A sweep entry's name (method plus options) when the run has one, else the method."""
    return str(row.get("run_name") or row.get("method"))


def _entry_of(row: dict) -> tuple:
    return (label_of(row),) + tuple(_config_value(row, k) for k in ENTRY_KEYS)


def _labels(entries: list[tuple]) -> dict[tuple, str]:
    """The label of each entry; entries sharing a label (runs without a run_name that differ in
    options) get their options appended, so they are never pooled."""
    shared = {e[0] for e in entries if sum(1 for f in entries if f[0] == e[0]) > 1}
    return {e: e[0] if e[0] not in shared else
            e[0] + " " + " ".join(f"{k}={v}" for k, v in zip(ENTRY_KEYS, e[1:]) if v != "null")
            for e in entries}


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value; nan when a value is not
    finite: a broken model's perplexity can be inf, and statistics.stdev fails on it)."""
    mean = float(statistics.mean(values))  # float even when every value is an int
    if len(values) < 2:
        return mean, None
    if not all(math.isfinite(v) for v in values):
        return mean, math.nan
    return mean, statistics.stdev(values)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean (None for fewer than two values)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean, sd = mean_sd(values)
    # the t quantile times the standard error, not t.interval: that is nan for a zero spread,
    # and seeds that all moved by the same amount have an exact, zero-width interval
    half = t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def _paired(runs: dict[int, dict], base: dict[int, dict] | None) -> dict:
    """Method minus baseline perplexity on the seeds both have: mean, 95% t interval, how many
    seeds were lower, and the verdict the interval supports. Also the ratio to the baseline
    (geometric mean over seeds, t interval on the log scale): perplexity differences of broken
    models (1e6 and up) are too wide for a useful interval, their ratios are not."""
    if not base:
        return {}
    pairs = [(runs[k]["ppl_test"], base[k]["ppl_test"]) for k in sorted(set(runs) & set(base))
             if runs[k].get("ppl_test") is not None and base[k].get("ppl_test") is not None]
    if not pairs:
        return {}
    diffs = [m - b for m, b in pairs]
    logs = [math.log(m / b) for m, b in pairs]
    interval, log_interval = t_interval(diffs), t_interval(logs)
    verdict = None
    if interval is not None:
        verdict = "better" if interval[1] < 0 else "worse" if interval[0] > 0 else "n.s."
    return {"diff_mean": mean_sd(diffs)[0],
            "diff_ci_low": interval[0] if interval else None,
            "diff_ci_high": interval[1] if interval else None,
            "ratio": math.exp(mean_sd(logs)[0]),
            "ratio_ci_low": math.exp(log_interval[0]) if log_interval else None,
            "ratio_ci_high": math.exp(log_interval[1]) if log_interval else None,
            "lower_on": f"{sum(d < 0 for d in diffs)}/{len(diffs)}", "verdict": verdict}


def comparison(rows: list[dict], baseline: str = BASELINE) -> list[dict]:
    """One row per method (or sweep entry) per sparsity type and ratio, over its seeds:
    mean and sd of perplexity, the change of the mean against the baseline in %, and the
    paired difference against the baseline on the same seeds (mean, 95% t interval, the ratio
    with its interval, seeds where the method was lower, verdict: better / worse only when the
    difference's interval excludes 0)."""
    groups: dict[tuple, dict[tuple, dict[int, dict]]] = {}
    for row in rows:
        by_entry = groups.setdefault(_group_key(row), {})
        by_entry.setdefault(_entry_of(row), {})[int(row.get("seed") or 0)] = row
    table = []
    for key in sorted(groups):
        names = _labels(list(groups[key]))
        members = {names[entry]: runs for entry, runs in groups[key].items()}
        base = members.get(baseline)
        summaries = []
        for label, runs in members.items():
            ppls = [r["ppl_test"] for r in runs.values() if r.get("ppl_test") is not None]
            mean, sd = mean_sd(ppls) if ppls else (None, None)
            first = next(iter(runs.values()))
            sparsities = [r.get("actual_sparsity") for r in runs.values()
                          if r.get("actual_sparsity") is not None]
            seconds = [r.get("prune_seconds") for r in runs.values()
                       if r.get("prune_seconds") is not None]
            summaries.append({
                "method": label, "sparsity_type": first.get("sparsity_type"),
                "sparsity_ratio": first.get("sparsity_ratio"),
                "actual_sparsity": mean_sd(sparsities)[0] if sparsities else None,
                "ppl_test": mean, "ppl_sd": sd, "seeds": len(ppls),
                "prune_seconds": mean_sd(seconds)[0] if seconds else None,
                "nsamples": first.get("nsamples"), "seqlen": first.get("seqlen"),
                "eval_windows_used": first.get("eval_windows_used"),
                "setting": setting_of(first),
                "threads": _machine_values(runs.values(), "torch_threads"),
                "kernels": _machine_values(runs.values(), "torch_cpu_capability"),
                **{k: None for k in PAIRED},
                **(_paired(runs, base) if label != baseline else {})})
        base_mean = next((r["ppl_test"] for r in summaries if r["method"] == baseline), None)
        for r in summaries:
            r["vs_baseline_pct"] = (100 * (r["ppl_test"] / base_mean - 1)
                                    if base_mean and r["ppl_test"] is not None else None)
        summaries.sort(key=lambda r: (r["method"] != baseline, r["ppl_test"] or math.inf))
        table += summaries
    return table


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def to_markdown(table: list[dict], baseline: str = BASELINE) -> str:
    names = [f if f != "vs_baseline_pct" else f"vs {baseline} (%)" for f in FIELDS]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(FIELDS)]
    lines += ["| " + " | ".join(_cell(row[f]) for f in FIELDS) + " |" for row in table]
    return "\n".join(lines) + "\n"


def _machine_values(runs, key: str) -> list:
    return sorted({str((r.get("machine") or {}).get(key)) for r in runs
                   if (r.get("machine") or {}).get(key) is not None})


def notes(table: list[dict], left_out: int = 0) -> list[str]:
    """What a reader must know of a table: several settings (one table each), runs on different
    thread counts (which move the numbers a little), files left out."""
    lines = []
    threads = sorted({t for row in table for t in row.get("threads") or []}, key=int)
    if len(threads) > 1:
        lines.append(f"note: runs on {', '.join(threads)} threads are mixed (the thread "
                     "count changes float sums, and so masks, a little)")
    kernels = sorted({k for row in table for k in row.get("kernels") or []})
    if len(kernels) > 1:
        lines.append(f"note: runs on the {', '.join(kernels)} CPU kernel paths are mixed "
                     "(another machine's float kernels move numbers a little)")
    if left_out:
        lines.append(f"note: {left_out} results file(s) left out as unreadable (named above)")
    return lines


def to_text(table: list[dict], baseline: str = BASELINE, left_out: int = 0) -> str:
    settings = list(dict.fromkeys(row["setting"] for row in table))
    if len(settings) > 1:
        parts = [f"== {setting} ==\n" + to_text([r for r in table if r["setting"] == setting],
                                                 baseline) for setting in settings]
        return "\n\n".join(parts + notes(table, left_out))
    text = _to_text(table, baseline)
    return "\n".join([text, *notes(table, left_out)])


def _to_text(table: list[dict], baseline: str = BASELINE) -> str:
    seeded = any((row.get("seeds") or 1) > 1 for row in table)
    header = (f"{'method':40s} {'type':>12s} {'ratio':>6s} {'actual_sparsity':>15s} "
              f"{'ppl_test':>12s} {'vs ' + baseline:>10s} {'prune_s':>9s}")
    if seeded:
        header += (f" {'seeds':>5s} {'sd':>8s} {'paired diff [95% CI]':>28s} "
                   f"{'ratio [95% CI]':>24s} {'lower':>6s} verdict")
    lines = [header]
    for row in table:
        delta = row["vs_baseline_pct"]
        line = (f"{str(row['method']):40s} {str(row['sparsity_type']):>12s} "
                f"{_cell(row['sparsity_ratio']):>6s} {_cell(row['actual_sparsity']):>15s} "
                f"{_cell(row['ppl_test']):>12s} "
                f"{'' if delta is None else f'{delta:+.2f}%':>10s} "
                f"{_cell(row['prune_seconds']):>9s}")
        if seeded:
            diff = ""
            if row["diff_mean"] is not None:
                diff = f"{row['diff_mean']:+.2f}"
                if row["diff_ci_low"] is not None:
                    diff += f" [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}]"
            line += (f" {row['seeds']:>5d} {_cell(row['ppl_sd']):>8s} {diff:>28s} "
                     f"{_ratio_cell(row):>24s} "
                     f"{row['lower_on'] or '':>6s} {row['verdict'] or ''}")
        lines.append(line)
    return "\n".join(lines)


def _ratio_cell(row: dict) -> str:
    if row["ratio"] is None:
        return ""
    text = f"{row['ratio']:.4g}"
    if row["ratio_ci_low"] is not None:
        text += f" [{row['ratio_ci_low']:.4g}, {row['ratio_ci_high']:.4g}]"
    return text


def to_csv(table: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({f: "" if row[f] is None else row[f] for f in FIELDS})
    return out.getvalue()


OFF_SCALE = 10.0  # an entry whose mean is this many times the panel's median is drawn at the edge


def plot_ppl_vs_sparsity(rows: list[dict], path: str | Path) -> Path:
    """Perplexity against the target sparsity, one line per method (N:M runs as their own
    series, square markers), log-scale y. With a single sparsity in the tree, methods go on
    the x axis instead, one panel per sparsity type, every seed a dot and the mean a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("ppl_test") is not None and r.get("method") != DENSE.name]
    if len({r.get("sparsity_ratio") for r in done}) > 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        _plot_sparsity_lines(ax, done)
    else:
        kinds = list(dict.fromkeys(r.get("sparsity_type") for r in done)) or ["-"]
        labels = list(dict.fromkeys(label_of(r) for r in done))
        fig, axes = plt.subplots(1, len(kinds), dpi=120, squeeze=False,
                                 figsize=(max(6.4, 0.55 * len(labels) * len(kinds) + 2), 4.6))
        for ax, kind in zip(axes[0], kinds):
            _plot_seed_panel(ax, [r for r in done if r.get("sparsity_type") == kind], labels)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_sparsity_lines(ax, done: list[dict]) -> None:
    series: dict[str, dict[float, list[float]]] = {}
    for r in done:
        kind = r.get("sparsity_type")
        name = label_of(r) + ("" if kind == "unstructured" else f" ({kind})")
        series.setdefault(name, {}).setdefault(r["sparsity_ratio"], []).append(r["ppl_test"])
    for name, by_ratio in sorted(series.items()):
        xs = sorted(by_ratio)
        line, = ax.plot(xs, [mean_sd(by_ratio[x])[0] for x in xs],
                        marker="s" if "(" in name else "o", label=name)
        for x in xs:  # every seed's run, so the spread shows
            ax.scatter([x] * len(by_ratio[x]), by_ratio[x], s=10, alpha=0.4,
                       color=line.get_color())
    ax.set_xlabel("sparsity")
    ax.set_yscale("log")
    ax.set_ylabel("WikiText-2 perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def off_scale(means: dict[str, float]) -> set[str]:
    """Entries whose mean is at least OFF_SCALE times the median entry's (broken models)."""
    if not means:
        return set()
    median = sorted(means.values())[len(means) // 2]
    return {label for label, mean in means.items() if mean >= OFF_SCALE * median}


def _plot_seed_panel(ax, runs: list[dict], labels: list[str]) -> None:
    """Per entry: its seeds as dots, their mean as a bar. Entries far above the rest (a broken
    model) are drawn as a marker at the top edge with their mean written beside it, so that they
    do not squash the spread of the others."""
    by_label = {label: [r["ppl_test"] for r in runs if label_of(r) == label] for label in labels}
    means = {label: mean_sd(v)[0] for label, v in by_label.items() if v}
    off = off_scale(means)
    on_scale = [v for label, vs in by_label.items() if vs and label not in off for v in vs]
    low, high = (min(on_scale), max(on_scale)) if on_scale else (0.0, 1.0)
    pad = 0.08 * (high - low or abs(high) or 1.0)
    top = high + pad
    for x, label in enumerate(labels):
        values = by_label[label]
        if not values:
            continue
        if label in off:
            ax.scatter([x], [top], marker="^", s=60, color="tab:red", clip_on=False)
            ax.annotate(f"off scale\nmean {means[label]:.3g}", (x, top), textcoords="offset points",
                        xytext=(0, -24), ha="center", fontsize=6, color="tab:red")
            continue
        ax.scatter([x] * len(values), values, s=14, alpha=0.5, color="tab:blue")
        ax.hlines(means[label], x - 0.3, x + 0.3, color="black", linewidth=1.5)
    ax.set_ylim(low - pad, top)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ratio = runs[0].get("sparsity_ratio") if runs else None
    ax.set_title(f"{runs[0].get('sparsity_type') if runs else ''} {ratio or ''} "
                 "(dots: seeds, bar: mean)", fontsize=9)
    ax.set_ylabel("WikiText-2 perplexity")
    ax.grid(True, axis="y", alpha=0.3)


def write_summary(roots: list[str | Path], out_dir: str | Path, baseline: str = BASELINE,
                  plot: bool = True) -> tuple[list[dict], str]:
    """Build the comparison from the results under `roots`; write summary.csv, summary.md
    (and ppl_vs_sparsity.png) into out_dir; return the table and its text rendering."""
    left_out: list[Path] = []
    rows = load_results(roots, left_out)
    table = comparison(rows, baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.csv").write_text(to_csv(table))
    (out / "summary.md").write_text(to_markdown(table, baseline)
                                    + "".join(f"\n{n}\n" for n in notes(table, len(left_out))))
    if plot and rows:
        plot_ppl_vs_sparsity(rows, out / "ppl_vs_sparsity.png")
    return table, to_text(table, baseline, len(left_out))
