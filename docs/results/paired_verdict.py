"""A pre-registered paired test's verdict, written from a tree of results files: one entry
against wanda, paired over the calibration seeds both have, 95% t interval of the difference;
"confirmed" only when the whole interval lies below 0 (the entry lower), "contradicted" when it
lies above, else "not confirmed": lib/sweeps/summary.py's better / worse / n.s., renamed. The study
collect.sh scripts run it:
  python docs/results/paired_verdict.py RESULTS_DIR ENTRY SEEDS TITLE OUT.md
(SEEDS: how many seeds the pre-registration asked for; fewer make the verdict provisional.)"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lib.sweeps import summary  # noqa: E402


def verdict_lines(root: Path, entry: str, seeds: int, title: str) -> list[str]:
    rows = summary.comparison(summary.load_results([root]))
    pair = next((r for r in rows if r["method"] == entry), None)
    base = next((r for r in rows if r["method"] == summary.BASELINE), None)
    lines = [f"# {title}", ""]
    if pair is None or base is None or pair["verdict"] is None:
        return lines + ["Not enough paired seeds yet for an interval.", ""]
    lo, hi = pair["diff_ci_low"], pair["diff_ci_high"]
    verdict = {"better": "confirmed", "worse": "contradicted"}.get(pair["verdict"], "not confirmed")
    return lines + [
        "| entry | seeds | ppl mean ± sd | paired diff vs wanda [95% CI] | ratio [95% CI] "
        "| lower on | verdict |", "| --- | --- | --- | --- | --- | --- | --- |",
        f"| wanda | {base['seeds']} | {base['ppl_test']:.3f} ± {base['ppl_sd']:.3f} | | | | |",
        f"| {entry} | {pair['seeds']} | {pair['ppl_test']:.3f} ± {pair['ppl_sd']:.3f} | "
        f"{pair['diff_mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {pair['ratio']:.4f} "
        f"[{pair['ratio_ci_low']:.4f}, {pair['ratio_ci_high']:.4f}] | {pair['lower_on']} "
        f"| {verdict} |", "",
        f"Pre-registered: {seeds} seeds. Seeds in this table: {pair['seeds']}"
        + ("" if pair["seeds"] >= seeds else f" (the verdict is provisional until all {seeds})."),
        ""]


if __name__ == "__main__":
    root, entry, seeds, title, out = sys.argv[1:6]
    text = "\n".join(verdict_lines(Path(root), entry, int(seeds), title)) + "\n"
    Path(out).write_text(text)
    print(text)
