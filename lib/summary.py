"""Summaries of any tree of results_*.json: a comparison table (printed, CSV, markdown) and a
perplexity-vs-sparsity plot."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

FIELDS = ("method", "sparsity_type", "sparsity_ratio", "actual_sparsity", "ppl_test",
          "vs_baseline_pct", "prune_seconds", "seeds", "ppl_sd", "diff_mean", "diff_ci_low",
          "diff_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high", "lower_on", "verdict",
          "nsamples", "seqlen", "eval_windows_used")
PAIRED = ("diff_mean", "diff_ci_low", "diff_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
          "lower_on", "verdict")


def load_results(roots: list[str | Path]) -> list[dict]:
    """Every results_*.json under the roots, with its path (runs still going or not evaluated
    have no ppl_test and count for nothing but their presence)."""
    rows = []
    for root in roots:
        for path in sorted(Path(root).rglob("*results_*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            record["path"] = str(path)
            rows.append(record)
    return rows


def _group_key(row: dict) -> tuple:
    return (0 if row.get("sparsity_type") == "unstructured" else 1,
            str(row.get("sparsity_type")), float(row.get("sparsity_ratio") or 0))


def label_of(row: dict) -> str:
    """A sweep entry's name (method plus options) when the run has one, else the method."""
    return str(row.get("run_name") or row.get("method"))


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean (None for fewer than two values)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    mean, sd = mean_sd(values)
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
    return {"diff_mean": sum(diffs) / len(diffs),
            "diff_ci_low": interval[0] if interval else None,
            "diff_ci_high": interval[1] if interval else None,
            "ratio": math.exp(sum(logs) / len(logs)),
            "ratio_ci_low": math.exp(log_interval[0]) if log_interval else None,
            "ratio_ci_high": math.exp(log_interval[1]) if log_interval else None,
            "lower_on": f"{sum(d < 0 for d in diffs)}/{len(diffs)}", "verdict": verdict}


def comparison(rows: list[dict], baseline: str = "wanda") -> list[dict]:
    """One row per method (or sweep entry) per sparsity type and ratio, over its seeds:
    mean and sd of perplexity, the change of the mean against the baseline in %, and the
    paired difference against the baseline on the same seeds (mean, 95% t interval, the ratio
    with its interval, seeds where the method was lower, verdict: better / worse only when the
    difference's interval excludes 0)."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for row in rows:
        by_label = groups.setdefault(_group_key(row), {})
        by_label.setdefault(label_of(row), {})[int(row.get("seed") or 0)] = row
    table = []
    for key in sorted(groups):
        members = groups[key]
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
                "actual_sparsity": sum(sparsities) / len(sparsities) if sparsities else None,
                "ppl_test": mean, "ppl_sd": sd, "seeds": len(ppls),
                "prune_seconds": sum(seconds) / len(seconds) if seconds else None,
                "nsamples": first.get("nsamples"), "seqlen": first.get("seqlen"),
                "eval_windows_used": first.get("eval_windows_used"),
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


def to_markdown(table: list[dict], baseline: str = "wanda") -> str:
    names = [f if f != "vs_baseline_pct" else f"vs {baseline} (%)" for f in FIELDS]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(FIELDS)]
    lines += ["| " + " | ".join(_cell(row[f]) for f in FIELDS) + " |" for row in table]
    return "\n".join(lines) + "\n"


def to_text(table: list[dict], baseline: str = "wanda") -> str:
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


def plot_ppl_vs_sparsity(rows: list[dict], path: str | Path) -> Path:
    """Perplexity against the target sparsity, one line per method (N:M runs as their own
    series, square markers), log-scale y. With a single sparsity in the tree, methods go on
    the x axis instead, one series per sparsity type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.get("ppl_test") is not None and r.get("method") != "dense"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if len({r.get("sparsity_ratio") for r in done}) > 1:
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
    else:
        labels = list(dict.fromkeys(label_of(r) for r in done))
        for offset, kind in enumerate(dict.fromkeys(r.get("sparsity_type") for r in done)):
            runs = [r for r in done if r.get("sparsity_type") == kind]
            x_of = {label: i + 0.12 * offset for i, label in enumerate(labels)}
            seeds_x = [x_of[label_of(r)] for r in runs]
            points = ax.scatter(seeds_x, [r["ppl_test"] for r in runs], s=12, alpha=0.45)
            means = {label: mean_sd([r["ppl_test"] for r in runs if label_of(r) == label])[0]
                     for label in labels if any(label_of(r) == label for r in runs)}
            ax.scatter([x_of[label] for label in means], list(means.values()), s=70,
                       marker="s" if kind != "unstructured" else "o",
                       color=points.get_facecolor()[0][:3],
                       label=f"{kind} {runs[0].get('sparsity_ratio'):g} (mean; dots: seeds)")
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=7)
        ax.set_xlabel("method")
    ax.set_yscale("log")
    ax.set_ylabel("WikiText-2 perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_summary(roots: list[str | Path], out_dir: str | Path, baseline: str = "wanda",
                  plot: bool = True) -> tuple[list[dict], str]:
    """Build the comparison from the results under `roots`; write summary.csv, summary.md
    (and ppl_vs_sparsity.png) into out_dir; return the table and its text rendering."""
    rows = load_results(roots)
    table = comparison(rows, baseline)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.csv").write_text(to_csv(table))
    (out / "summary.md").write_text(to_markdown(table, baseline))
    if plot and rows:
        plot_ppl_vs_sparsity(rows, out / "ppl_vs_sparsity.png")
    return table, to_text(table, baseline)
