"""OWL in a study tree: what its dense pass cost (owl_pass_seconds of every OWL run against the
prune seconds of uniform wanda on the same level and seed, which the lanes ran under the same
load), and the per-block outlier ratios D_b and sparsities (mean over seeds, OWL-wanda runs).
Usage: python owl_report.py DIR [LEVEL] (DIR holds one folder per model, as collect.sh writes)."""
import json
import statistics
import sys
from pathlib import Path


def runs(model_dir: Path) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in model_dir.rglob("results_*.json")]
    return [r for r in rows if r.get("status") == "done"]


def cost(rows: list[dict]) -> str | None:
    wanda = {(r["sparsity_ratio"], r["seed"]): r["prune_seconds"] for r in rows
             if r["method"] == "wanda" and not r.get("layer_sparsity")
             and r["sparsity_type"] == "unstructured"}
    pairs = [(r["owl_pass_seconds"], wanda[(r["sparsity_ratio"], r["seed"])]) for r in rows
             if r.get("owl_pass_seconds") is not None
             and (r["sparsity_ratio"], r["seed"]) in wanda]
    if not pairs:
        return None
    passes = [p for p, _ in pairs]
    ratios = [p / w for p, w in pairs]
    return (f"OWL dense pass {statistics.mean(passes):.1f} s (range {min(passes):.1f}-"
            f"{max(passes):.1f}, {len(pairs)} OWL runs) = {statistics.mean(ratios):.2f} x uniform "
            f"wanda's prune seconds on the same level and seed (range {min(ratios):.2f}-"
            f"{max(ratios):.2f})")


def blocks(rows: list[dict], level: float) -> list[str]:
    owl = [r for r in rows if r["method"] == "wanda" and r.get("layer_sparsity")
           and r["sparsity_ratio"] == level]
    if not owl:
        return []
    lines = [f"OWL-wanda at {level:.0%}, {len(owl)} seeds: block, D_b (%), target sparsity,"
             " achieved sparsity (means)"]
    for b in range(len(owl[0]["owl_outlier_ratio"])):
        d, t, a = (statistics.mean(r[k][b] for r in owl) for k in
                   ("owl_outlier_ratio", "sparsity_target_per_layer", "sparsity_per_layer"))
        lines.append(f"  {b:2d}  {100 * d:5.2f}  {t:.4f}  {a:.4f}")
    overall = statistics.mean(r["actual_sparsity"] for r in owl)
    lines.append(f"  overall achieved {overall:.4f}")
    return lines


def main(root: Path, level: float = 0.7) -> None:
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        rows = runs(model_dir)
        line = cost(rows)
        if line:
            print(f"{model_dir.name}: {line}")
            print("\n".join(blocks(rows, level)))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *[float(a) for a in sys.argv[2:3]])
