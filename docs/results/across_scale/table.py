"""Every entry's perplexity ratio to wanda on the three real models, side by side per regime,
from the committed results files of each model's studies (SELECTIVITY.md, "Across scale").

Each model's studies are listed below in order of preference. A cell comes from the first
study that has the entry in that regime (its own wanda runs are the baseline: pairs never mix
studies, which ran different versions of the code) and shows the geometric-mean ratio over the
paired seeds with its 95% t interval (log scale), the number of seeds, and "better"/"worse"
when the interval excludes 1. All runs calibrate on 16 C4 windows x 512 tokens and evaluate on
the first 32 WikiText-2 test windows of 512 tokens, except the cells marked "16w": Gemma 3's
RIA/OWL study evaluated on the first 16.

  python docs/results/across_scale/table.py
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
sys.path.insert(0, str(RESULTS.parents[1]))
from lib.pruning.methods import BASELINE  # noqa: E402
from lib.sweeps import summary  # noqa: E402

# model -> its studies in order of preference, the newest model last; a study may span several folders (fresh seeds
# added to a first set), whose runs are pooled
STUDIES: dict[str, list[list[str]]] = {
    "SmolLM2-135M": [["smollm2_seed_study/seeds0-4", "smollm2_seed_study/confirm_seeds5-9"],
                     ["owl_ria_study/smollm2-135m"]],
    "Gemma 3 270M": [["gemma3_seed_study/combined_unstructured_seeds0-9"],
                     ["gemma3_seed_study/seeds0-4"], ["owl_ria_study/gemma3-270m"]],
    "Qwen2.5-Coder-1.5B": [["qwen_study/qwen2.5-coder-1.5b"]],
}
REGIMES = [("unstructured", 0.5), ("2:4", 0.5), ("unstructured", 0.7)]
STUDY_BUDGET = {"nsamples": 16, "seqlen": 512}
EVAL_WINDOWS = 32


def study_rows(folders: list[str]) -> dict[tuple, dict]:
    """(regime, entry) -> the comparison row of one study, at the study's calibration budget."""
    rows = summary.load_results([RESULTS / f for f in folders])
    table = summary.comparison(rows, BASELINE)
    return {((r["sparsity_type"], r["sparsity_ratio"]), r["method"]): r for r in table
            if all(r.get(k) == v for k, v in STUDY_BUDGET.items())}


def pick(studies: list[dict[tuple, dict]], key: tuple) -> dict | None:
    """The row of the first study that has the entry paired with its wanda (more than one seed
    preferred to a single one)."""
    found = [s[key] for s in studies if key in s and s[key].get("ratio") is not None]
    return next((r for r in found if r["ratio_ci_low"] is not None), found[0] if found else None)


def cell(row: dict | None) -> str:
    if row is None:
        return "-"
    n = int(row["lower_on"].split("/")[1])
    windows = windows_note(row)
    if row["ratio_ci_low"] is None:
        return f"{number(row['ratio'])} (n={n}{windows})"
    low, high = row["ratio_ci_low"], row["ratio_ci_high"]
    # the verdict of the ratio's interval: a broken model's differences are too wide for one
    verdict = ", better" if high < 1 else ", worse" if low > 1 else ""
    return f"{number(row['ratio'])} [{number(low)}, {number(high)}] (n={n}{verdict}{windows})"


def windows_note(row: dict) -> str:
    """", 16w" for a study evaluated on other than the first 32 windows, else nothing."""
    used = row["eval_windows_used"]
    return "" if used == EVAL_WINDOWS else f", {used}w"


def number(x: float) -> str:
    return f"{x:.3f}" if x < 100 else f"{x:.2g}"


def baseline_cell(studies: list[dict[tuple, dict]], regime: tuple) -> str:
    """Wanda's own perplexity in the first of the model's studies that has it."""
    for s in studies:
        row = s.get((regime, BASELINE))
        if row is not None:
            return f"{row['ppl_test']:.2f} (n={row['seeds']}{windows_note(row)})"
    return "-"


def main() -> None:
    per_model = {m: [study_rows(f) for f in folders] for m, folders in STUDIES.items()}
    newest = per_model[list(STUDIES)[-1]]  # the model under study: all its entries are listed
    for regime in REGIMES:
        entries = sorted({e for studies in per_model.values() for s in studies
                          for (g, e) in s if g == regime and e != BASELINE})
        shared = [e for e in entries
                  if sum(pick(st, (regime, e)) is not None for st in per_model.values()) >= 2
                  or pick(newest, (regime, e)) is not None]
        name = summary.pattern_label(*regime)
        print(f"\n{name}: perplexity / wanda's, paired by seed [95% CI] (seeds)\n")
        print("| entry | " + " | ".join(per_model) + " |")
        print("| --- |" + " --- |" * len(per_model))
        print(f"| wanda's perplexity, {name} | "
              + " | ".join(baseline_cell(st, regime) for st in per_model.values()) + " |")
        for e in shared:
            print(f"| `{e}`, {name} | "
                  + " | ".join(cell(pick(st, (regime, e))) for st in per_model.values()) + " |")


if __name__ == "__main__":
    main()
