"""Summaries of any tree of results_*.json: a comparison table (printed, CSV, markdown) and a
perplexity-vs-sparsity plot."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

FIELDS = ("method", "sparsity_type", "sparsity_ratio", "actual_sparsity", "ppl_test",
          "vs_baseline_pct", "prune_seconds", "nsamples", "seqlen", "eval_windows_used", "seed")


def load_results(roots: list[str | Path]) -> list[dict]:
    """Every results_*.json under the roots (status done or pruned), with its path."""
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


def comparison(rows: list[dict], baseline: str = "wanda") -> list[dict]:
    """One row per run, grouped by sparsity type and ratio; `vs_baseline_pct` is the change of
    perplexity against the baseline method's run in the same group (None without one)."""
    table = []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    for key in sorted(groups):
        members = groups[key]
        base = next((r.get("ppl_test") for r in members if r.get("method") == baseline), None)
        for r in sorted(members, key=lambda r: (r.get("method") != baseline,
                                                r.get("ppl_test") or math.inf)):
            ppl = r.get("ppl_test")
            delta = None
            if base and ppl is not None:
                delta = 100 * (ppl / base - 1)
            table.append({**{f: r.get(f) for f in FIELDS}, "vs_baseline_pct": delta})
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
    header = (f"{'method':22s} {'type':>12s} {'ratio':>6s} {'actual_sparsity':>15s} "
              f"{'ppl_test':>12s} {'vs ' + baseline:>10s} {'prune_s':>9s}")
    lines = [header]
    for row in table:
        delta = row["vs_baseline_pct"]
        lines.append(f"{str(row['method']):22s} {str(row['sparsity_type']):>12s} "
                     f"{_cell(row['sparsity_ratio']):>6s} {_cell(row['actual_sparsity']):>15s} "
                     f"{_cell(row['ppl_test']):>12s} "
                     f"{'' if delta is None else f'{delta:+.2f}%':>10s} "
                     f"{_cell(row['prune_seconds']):>9s}")
    return "\n".join(lines)


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
        series: dict[str, list[tuple[float, float]]] = {}
        for r in done:
            kind = r.get("sparsity_type")
            name = str(r.get("method")) + ("" if kind == "unstructured" else f" ({kind})")
            series.setdefault(name, []).append((r["sparsity_ratio"], r["ppl_test"]))
        for name, points in sorted(series.items()):
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="s" if "(" in name else "o", label=name)
        ax.set_xlabel("sparsity")
    else:
        methods = list(dict.fromkeys(str(r.get("method")) for r in done))
        for kind in dict.fromkeys(r.get("sparsity_type") for r in done):
            points = [(methods.index(str(r["method"])), r["ppl_test"]) for r in done
                      if r.get("sparsity_type") == kind]
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="s" if kind != "unstructured" else "o", linestyle="none",
                    markersize=8, label=f"{kind} {done[0].get('sparsity_ratio'):g}")
        ax.set_xticks(range(len(methods)), methods, rotation=20)
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
