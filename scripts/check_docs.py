#!/usr/bin/env python
"""Rerun the documented examples and compare their output with the numbers the docs show.

In QUICKSTART.md, SELECTIVITY.md and docs/reference_results.md (or the pages given), a ```bash block preceded by the line
`<!-- docs-check -->` is run as written from the repository root (with .venv/bin first on
PATH), and the numbers in the output block right after it are compared with what the commands
print: every `wikitext perplexity X` line, every row of a zero-shot table (accuracy and
normalized accuracy), every row of a sweep's summary table (its perplexity; the timings are not
compared), and every row of a Markdown table (each number in it; e.g. the channel statistics of
scripts/hazard_table.py).

Tolerances: perplexity within 0.2% (relative) over 64 or more evaluation windows, and
accuracies within two examples' share, which is what another CPU's float kernels were measured
to move (README, "Reproducing the numbers": AVX2 instead of AVX-512 kernels turned 0.4583 into
0.5417 on a 24-example task). A perplexity over fewer windows averages fewer tokens, so the same
few flipped mask entries move it more: its tolerance grows as sqrt(64 / windows) (1.6% for one
window; measured: an AMD EPYC printed 47.496 for step 6's one-window 47.126, 0.79%). On the
machine the docs were written on the numbers are equal to the last digit, and the check says
which it found. A sweep's summary prints perplexities to two decimals, so its rows also get
the rounding's 0.005. The numbers of a Markdown table (channel statistics) may move by 5% or
0.02, whichever is larger: they are read from the calibration activations, which another CPU's
kernels move through the few mask entries they flip in earlier blocks.

A sweep skips runs whose finished results are already in its output tree, and then prints those
results, whatever code made them: before checking a page that runs a sweep on a machine where
the sweep ran before, remove its tree (`out/<model>_selectivity/`) to check the current code.
The check says how many runs a sweep skipped.

  python scripts/check_docs.py [PAGE.md ...] [--list] [--outputs DIR]
  python scripts/check_docs.py --links [PAGE.md ...]

`--links` runs nothing: it checks that every relative link of the pages (default: README.md,
QUICKSTART.md, SELECTIVITY.md and docs/*.md) points to an existing file or folder, and every
`#anchor` into a Markdown page to one of its headings.

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
# a sweep summary's row: "entry  type  ratio  actual_sparsity  ppl_test  [vs wanda]  prune_s ..."
SWEEP_ROW = re.compile(r"^(\S+)\s+(unstructured|\d+:\d+)\s+(\d+\.\d+)\s+\d+\.\d+\s+"
                       r"(\d[\d.]*(?:e[+-]?\d+)?)(?=\s|$)", re.M)
SWEEP_ROUNDING = 0.005  # ppl_test printed to two decimals
SKIPPED = ": skipped (finished results exist)"  # lib/sweeps/sweep.py's line for a skipped run
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")
STATS_TOLERANCE = 0.05  # relative, for the numbers of a Markdown table
STATS_ABSOLUTE = 0.02
DEFAULT_LINK_PAGES = ["README.md", "QUICKSTART.md", "SELECTIVITY.md", "docs/*.md"]
# pages with checked examples; SELECTIVITY's and reference_results' tables are read from
# committed results files, in a second
DEFAULT_PAGES = ["QUICKSTART.md", "SELECTIVITY.md", "docs/reference_results.md"]


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


def _is_separator(line: str) -> bool:
    return set(line.strip()) <= set("|-: ")


def markdown_rows(text: str) -> dict[str, float]:
    """Each number of each body row of the Markdown tables in text, named by the row's first
    cell and its place in the row (header and separator rows are skipped)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    values = {}
    for i, line in enumerate(lines):
        if _is_separator(line) or (i + 1 < len(lines) and _is_separator(lines[i + 1])):
            continue
        label, *cells = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for j, number in enumerate(NUMBER.findall(" ".join(cells))):
            values[f"| {label} #{j}"] = float(number)
    return values


def numbers(text: str) -> dict[str, float]:
    """The comparable numbers of a command's output, by name."""
    values = {f"perplexity {i}": float(v) for i, v in enumerate(PPL_LINE.findall(text))}
    for task, acc, acc_norm, n in TABLE_ROW.findall(text):
        values[f"{task} acc (n={n})"] = float(acc)
        if acc_norm != "-":
            values[f"{task} acc_norm (n={n})"] = float(acc_norm)
    for entry, kind, ratio, ppl in SWEEP_ROW.findall(text):
        values[f"sweep {entry} {kind} {ratio} ppl"] = float(ppl)
    values.update(markdown_rows(text))
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
        elif name.startswith("sweep "):
            tolerance = ppl_relative * expected + SWEEP_ROUNDING
        elif name.startswith("| "):
            tolerance = max(STATS_TOLERANCE * abs(expected), STATS_ABSOLUTE)
        else:
            # two examples, plus the rounding of numbers printed to four digits
            tolerance = 2 / int(re.search(r"n=(\d+)", name).group(1)) + 1e-4
        if abs(got - expected) > tolerance:
            problems.append(f"{name}: documented {expected}, got {got} "
                            f"(tolerance {tolerance:.4g})")
    return problems


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M):
        base = slug(match.group(1))
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown page (outside code blocks) whose file or folder does not
    exist, or whose #anchor names no heading of the Markdown page it points into."""
    problems = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page.resolve()
        if not resolved.exists():
            problems.append(f"{page}: {target}: no such file or folder")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{page}: {target}: no heading with that anchor")
    return problems


def link_pages(pages: list[str]) -> list[Path]:
    """The pages named, or the docs' pages by default (README, QUICKSTART, SELECTIVITY, docs/)."""
    if pages:
        return [Path(p) for p in pages]
    return [path for pattern in DEFAULT_LINK_PAGES for path in sorted(ROOT.glob(pattern))]


def run(example: Example) -> str:
    env = dict(os.environ, PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", example.commands], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"exit {done.returncode}: " + " | ".join(tail))
    return done.stdout + done.stderr


def _grouped(names) -> list[str]:
    """Names for --list, a Markdown table row's numbers as one item."""
    rows: dict[str, int] = {}
    for name in names:
        key = name.rsplit(" #", 1)[0] if name.startswith("| ") else name
        rows[key] = rows.get(key, 0) + 1
    return [f"{key} |: {n} numbers" if key.startswith("| ") else key for key, n in rows.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pages", nargs="*", default=[])
    p.add_argument("--list", action="store_true", help="list the checked examples, run none")
    p.add_argument("--outputs", type=Path, default=None, help="write each example's output here")
    p.add_argument("--quick", action="store_true",
                   help="leave out the examples that run a sweep (QUICKSTART step 3: 8 runs, about "
                        "ten minutes more; the test suite's docs check runs without them)")
    p.add_argument("--links", action="store_true",
                   help="check the pages' relative links and anchors instead, run nothing")
    args = p.parse_args()
    if args.links:
        problems = [problem for page in link_pages(args.pages) for problem in broken_links(page)]
        print("\n".join(problems) if problems else "every relative link resolves")
        return 1 if problems else 0
    failures = 0
    for page in map(Path, args.pages or [str(ROOT / p) for p in DEFAULT_PAGES]):
        for example in examples(page):
            if args.quick and "run_selectivity_experiments.sh" in example.commands:
                print(f"{example.page}:{example.line}: left out (--quick: a sweep)")
                continue
            documented = numbers(example.output)
            where = f"{example.page}:{example.line}"
            if args.list:
                print(f"{where}: {len(documented)} numbers: {', '.join(_grouped(documented))}")
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
            skipped = output.count(SKIPPED)
            if skipped:
                print(f"  note: {skipped} sweep run(s) skipped as finished: their numbers are from "
                      "earlier results files; remove the sweep's tree to rerun them")
            for problem in problems:
                print(f"  {problem}")
            failures += bool(problems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
