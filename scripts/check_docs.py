#!/usr/bin/env python
"""Rerun the documented examples and compare their output with the numbers the docs show.

In QUICKSTART.md (or any page given), a ```bash block preceded by the line
`<!-- docs-check -->` is run as written from the repository root (with .venv/bin first on
PATH), and the numbers in the output block right after it are compared with what the commands
print: every `wikitext perplexity X` line, and every row of a zero-shot table (accuracy and
normalized accuracy).

Tolerances: perplexity within 0.2% (relative) over 64 or more evaluation windows, and
accuracies within two examples' share, which is what another CPU's float kernels were measured
to move (README, "Reproducing the numbers": AVX2 instead of AVX-512 kernels turned 0.4583 into
0.5417 on a 24-example task). A perplexity over fewer windows averages fewer tokens, so the same
few flipped mask entries move it more: its tolerance grows as sqrt(64 / windows) (1.6% for one
window; measured: an AMD EPYC printed 47.496 for step 6's one-window 47.126, 0.79%). On the
machine the docs were written on the numbers are equal to the last digit, and the check says
which it found.

  python scripts/check_docs.py [PAGE.md ...] [--list] [--outputs DIR]

`--outputs DIR` also writes each example's full output to DIR/<page>_<line>.txt (to update the
page from, after trimming progress bars).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- docs-check -->"
PPL_TOLERANCE = 0.002  # over REFERENCE_WINDOWS or more evaluation windows
REFERENCE_WINDOWS = 64
EVAL_WINDOWS = re.compile(r"--eval_windows[ =](\d+)")
PPL_LINE = re.compile(r"^wikitext perplexity (\S+)$", re.M)
# "task  acc  stderr  acc_norm  stderr  n"; "-" where a task has no normalized accuracy
TABLE_ROW = re.compile(r"^(\S+)\s+([\d.]+)\s+[\d.-]+\s+([\d.-]+)\s+[\d.-]+\s+(\d+)$", re.M)


@dataclass
class Example:
    page: str
    line: int
    commands: str
    output: str


def examples(page: Path) -> list[Example]:
    """The marked bash blocks of a page, each with the output block that follows it."""
    text = page.read_text()
    found = []
    for match in re.finditer(re.escape(MARKER) + r"\s*```bash\n(.*?)```\s*```\n(.*?)```", text,
                             re.S):
        line = text[:match.start()].count("\n") + 1
        found.append(Example(page.name, line, match.group(1), match.group(2)))
    return found


def numbers(text: str) -> dict[str, float]:
    """The comparable numbers of a command's output, by name."""
    values = {f"perplexity {i}": float(v) for i, v in enumerate(PPL_LINE.findall(text))}
    for task, acc, acc_norm, n in TABLE_ROW.findall(text):
        values[f"{task} acc (n={n})"] = float(acc)
        if acc_norm != "-":
            values[f"{task} acc_norm (n={n})"] = float(acc_norm)
    return values


def ppl_tolerance(commands: str) -> float:
    """Relative perplexity tolerance for an example: the fewest --eval_windows it asks for sets
    it (no flag: the whole test split, more than the reference)."""
    windows = min((int(w) for w in EVAL_WINDOWS.findall(commands)), default=REFERENCE_WINDOWS)
    return PPL_TOLERANCE * math.sqrt(REFERENCE_WINDOWS / min(max(windows, 1), REFERENCE_WINDOWS))


def compare(documented: dict[str, float], produced: dict[str, float],
            ppl_relative: float = PPL_TOLERANCE) -> list[str]:
    """Problems, empty when every documented number is reproduced within tolerance."""
    problems = []
    for name, expected in documented.items():
        got = produced.get(name)
        if got is None:
            problems.append(f"{name}: documented {expected}, not printed")
            continue
        if name.startswith("perplexity"):
            tolerance = ppl_relative * expected
        else:
            # two examples, plus the rounding of numbers printed to four digits
            tolerance = 2 / int(re.search(r"n=(\d+)", name).group(1)) + 1e-4
        if abs(got - expected) > tolerance:
            problems.append(f"{name}: documented {expected}, got {got} "
                            f"(tolerance {tolerance:.4g})")
    return problems


def run(example: Example) -> str:
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", example.commands], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return done.stdout + done.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pages", nargs="*", default=[str(ROOT / "QUICKSTART.md")])
    p.add_argument("--list", action="store_true", help="list the checked examples, run none")
    p.add_argument("--outputs", type=Path, default=None, help="write each example's output here")
    args = p.parse_args()
    failures = 0
    for page in map(Path, args.pages):
        for example in examples(page):
            documented = numbers(example.output)
            where = f"{example.page}:{example.line}"
            if args.list:
                print(f"{where}: {len(documented)} numbers: {', '.join(documented)}")
                continue
            print(f"{where}: running ...", flush=True)
            start = time.perf_counter()
            try:
                output = run(example)
            except RuntimeError as err:
                print(f"{where}: FAILED to run ({err})")
                failures += 1
                continue
            if args.outputs:
                args.outputs.mkdir(parents=True, exist_ok=True)
                (args.outputs / f"{page.stem}_{example.line}.txt").write_text(output)
            produced = numbers(output)
            problems = compare(documented, produced, ppl_tolerance(example.commands))
            exact = all(produced.get(k) == v for k, v in documented.items())
            verdict = "identical" if exact else "within tolerance" if not problems else "DIFFERS"
            print(f"{where}: {verdict} ({len(documented)} numbers, "
                  f"{time.perf_counter() - start:.0f} s)")
            for problem in problems:
                print(f"  {problem}")
            failures += bool(problems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
