"""Compact tables of a study tree for SELECTIVITY.md: per model, sparsity pattern and level, each
entry's perplexity (mean ± sd over seeds) and its paired difference against a baseline entry.
Usage: python tables.py DIR [BASELINE [ONLY]] (DIR holds one folder per model, as collect.sh
writes; ONLY keeps the entries whose name contains it, e.g. "owl" against OWL-wanda);
python tables.py DIR --owl_effect: each score with OWL against the same score uniform."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lib.sweeps import summary  # noqa: E402


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return ""
    return f"{x:.3g}" if abs(x) >= 1e5 else f"{x:.{digits}f}"


def rows_md(table: list[dict], baseline: str) -> list[str]:
    out = ["| entry | seeds | ppl mean ± sd | paired diff vs " + baseline + " [95% CI] |"
           " ratio [95% CI] | lower on | verdict |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        ppl = f"{fmt(r['ppl_test'])} ± {fmt(r['ppl_sd'])}" if r["ppl_sd"] is not None else fmt(
            r["ppl_test"])
        diff = ratio = ""
        if r["diff_mean"] is not None and r["diff_ci_low"] is not None:
            diff = f"{r['diff_mean']:+.2f} [{r['diff_ci_low']:+.2f}, {r['diff_ci_high']:+.2f}]"
            ratio = f"{r['ratio']:.3f} [{r['ratio_ci_low']:.3f}, {r['ratio_ci_high']:.3f}]"
        name = r["method"] if r["method"] == baseline else f"`{r['method']}`"
        out.append(f"| {name} | {r['seeds']} | {ppl} | {diff} | {ratio} | {r['lower_on'] or ''} | "
                   f"{r['verdict'] or ''} |")
    return out


def main(root: Path, baseline: str = "wanda", only: str = "") -> None:
    for model in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = [r for r in summary.load_results([model]) if only in summary.label_of(r)]
        table = summary.comparison(rows, baseline)
        keys = sorted({(r["sparsity_type"], r["sparsity_ratio"]) for r in table},
                      key=lambda k: (k[0] != "unstructured", k[1]))
        for kind, ratio in keys:
            part = [r for r in table if (r["sparsity_type"], r["sparsity_ratio"]) == (kind, ratio)]
            if not any(r["method"] == baseline for r in part):
                continue
            seeds = max(r["seeds"] for r in part)
            level = summary.pattern_label(kind, ratio)
            print(f"\n{model.name}, {level} (up to {seeds} seeds):\n")
            print("\n".join(rows_md(part, baseline)))


def owl_effect(root: Path) -> None:
    """Each score with OWL's block ratios against the same score uniform, paired by seed."""
    print("\n| model | level | score | OWL / uniform perplexity [95% CI] | OWL lower on | verdict |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = summary.load_results([model])
        for method in sorted({r["method"] for r in rows if r.get("layer_sparsity")}):
            pair = [r for r in rows if r["method"] == method and r["sparsity_type"] == "unstructured"]
            for r in summary.comparison(pair, method):
                if r["method"] != method and r["ratio_ci_low"] is not None:
                    print(f"| {model.name} | {r['sparsity_ratio']:.0%} | {method} | {r['ratio']:.3f}"
                          f" [{r['ratio_ci_low']:.3f}, {r['ratio_ci_high']:.3f}] | "
                          f"{r['lower_on']} | {r['verdict']} |")


if __name__ == "__main__":
    if sys.argv[2:3] == ["--owl_effect"]:
        owl_effect(Path(sys.argv[1]))
        sys.exit()
    main(Path(sys.argv[1]), *sys.argv[2:4])
