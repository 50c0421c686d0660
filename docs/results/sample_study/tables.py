"""Each selectivity method with its default token subsample against the same method with every
token, paired by calibration seed (95% t interval of the perplexity ratio).
Usage: python docs/results/sample_study/tables.py OUT_ROOT (as run.sh writes it)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from lib.sweeps import summary  # noqa: E402

EVERY = ":selectivity_sample=1"


def main(root: Path) -> None:
    rows = summary.load_results([root])
    print("| method | seeds | every token: ppl mean ± sd | default subsample: ppl mean ± sd |"
          " subsample / every token [95% CI] | subsample lower on | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in ("wanda_idf", "wanda_spiky", "wanda_select"):
        pair = [r for r in rows if summary.label_of(r) in (method, method + EVERY)]
        table = {r["method"]: r for r in summary.comparison(pair, method + EVERY)}
        base, sub = table.get(method + EVERY), table.get(method)
        if base is None or sub is None or sub["ratio_ci_low"] is None:
            continue
        print(f"| {method} | {sub['seeds']} | {base['ppl_test']:.2f} ± {base['ppl_sd']:.2f} | "
              f"{sub['ppl_test']:.2f} ± {sub['ppl_sd']:.2f} | {sub['ratio']:.3f} "
              f"[{sub['ratio_ci_low']:.3f}, {sub['ratio_ci_high']:.3f}] | {sub['lower_on']} | "
              f"{sub['verdict']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
