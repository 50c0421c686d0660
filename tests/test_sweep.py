"""The sweep script end to end on a tiny model, and the summary tool on hand-made files."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.sweeps import summary

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_selectivity_experiments.sh"


def tree(out_root: Path, model_dir, nsamples: int = 2, *extra: str) -> Path:
    """Where a sweep of this file's budget puts its runs: <out_root>/<model>/<budget>."""
    from lib.sweeps.sweep import budget_dir

    return out_root / budget_dir(str(model_dir), ["--nsamples", str(nsamples), "--seqlen", "32",
                                                  "--eval_windows", "2", *extra])


def sweep(model_dir, out_root, data_dir, methods: str, *sparsity,
          extra: list[str] = ()) -> subprocess.CompletedProcess:
    seeds = list(extra[:2]) if extra[:1] == ["--seeds"] else []
    passthrough = list(extra[2:]) if seeds else list(extra)
    return subprocess.run(
        ["bash", str(SCRIPT), str(model_dir), *sparsity, "--methods", methods, *seeds,
         "--out_root", str(out_root), "--", "--nsamples", "2", "--seqlen", "32",
         "--eval_windows", "2", "--data_dir", str(data_dir), *passthrough],
        cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_sweep_runs_resumes_and_survives_a_failed_run(tiny_llama_dir, tmp_path, data_dir):
    first = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,magnitude")
    assert first.returncode == 0, first.stderr[-2000:]
    group = tree(tmp_path, tiny_llama_dir) / "unstructured" / "0.5"
    for method in ("wanda", "magnitude"):
        record = json.loads((group / method / f"results_{method}.json").read_text())
        assert record["status"] == "done" and record["actual_sparsity"] == 0.5
    rows = list(csv.DictReader((group / "summary.csv").open()))
    assert [r["method"] for r in rows] == ["wanda", "magnitude"]
    assert float(rows[0]["vs_baseline_pct"]) == 0.0
    assert (group / "summary.md").is_file() and (group / "ppl_vs_sparsity.png").stat().st_size
    assert "magnitude" in first.stdout and "ppl_test" in first.stdout

    before = (group / "wanda" / "results_wanda.json").stat().st_mtime_ns
    second = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,magnitude")
    assert second.returncode == 0 and second.stdout.count("skipped (finished results exist)") == 2
    assert (group / "wanda" / "results_wanda.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_sweeps_of_two_budgets_into_one_root_stay_apart(tiny_llama_dir, tmp_path, data_dir):
    """The issue's case: a second sweep with another budget into the same --out_root runs
    every entry (none refused, none taken for done) and summarizes only its own runs."""
    small = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,magnitude")
    big = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,magnitude", extra=["--nsamples", "4"])
    assert small.returncode == big.returncode == 0, big.stderr[-2000:]
    assert big.stdout.count(": done") == 2
    for n in (2, 4):
        group = tree(tmp_path, tiny_llama_dir, n) / "unstructured" / "0.5"
        rows = list(csv.DictReader((group / "summary.csv").open()))
        assert [r["nsamples"] for r in rows] == [str(n)] * 2


def _outcomes(root: Path) -> dict[str, tuple]:
    """Per run directory: what a run decided and measured, timings and provenance aside."""
    found = {}
    for path in sorted(root.rglob("results_*.json")):
        r = json.loads(path.read_text())
        found[str(path.relative_to(root))] = (r["ppl_test"], r["actual_sparsity"], r["seed"],
                                              r["sparsity_per_layer"], r["method_options"])
    return found


@pytest.fixture(scope="module")
def sequential_sweep(tiny_llama_dir, tmp_path_factory, data_dir) -> Path:
    """Two methods x two seeds, one run at a time: what the parallel backends must reproduce."""
    root = tmp_path_factory.mktemp("sequential_sweep")
    seq = sweep(tiny_llama_dir, root, data_dir, "wanda,magnitude", extra=["--seeds", "0,1"])
    assert seq.returncode == 0, seq.stderr[-2000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jobs", "ray"])
def test_parallel_sweeps_write_what_a_sequential_one_does(backend, sequential_sweep,
                                                          tiny_llama_dir, tmp_path, data_dir):
    if backend == "ray":
        pytest.importorskip("ray", reason="Ray is not installed (pip install ray)")
    flags = ["--jobs", "2"] if backend == "jobs" else ["--backend", "ray", "--jobs", "2"]
    par = subprocess.run(
        ["bash", str(SCRIPT), str(tiny_llama_dir), "--methods", "wanda,magnitude", "--seeds",
         "0,1", *flags, "--out_root", str(tmp_path / "par"), "--", "--nsamples", "2",
         "--seqlen", "32", "--eval_windows", "2", "--data_dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert par.returncode == 0, par.stdout[-2000:] + par.stderr[-2000:]
    assert par.stdout.count(": done") == 4
    assert _outcomes(sequential_sweep) == _outcomes(tmp_path / "par") != {}
    if backend == "jobs":  # two runs share the 2 cores: one thread each
        logs = list((tmp_path / "par").rglob("results_wanda.json"))
        assert all(json.loads(p.read_text())["machine"]["torch_threads"] == max(
            1, (os.cpu_count() or 1) // 2) for p in logs)


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_sweep_goes_on(tiny_llama_dir, tmp_path, data_dir):
    # --use_variant suits wanda but not the OBS ablation: that one run fails
    proc = sweep(tiny_llama_dir, tmp_path, data_dir, "ablate_mag_seq,wanda", "0.5",
                 "unstructured", extra=["--use_variant"])
    assert proc.returncode != 0
    assert "ablate_mag_seq: FAILED" in proc.stdout and "ablate_mag_seq" in proc.stderr
    group = tree(tmp_path, tiny_llama_dir, 2, "--use_variant") / "unstructured" / "0.5"
    assert group.parent.parent.name.endswith("_variant")  # the variant is part of the budget
    assert json.loads((group / "wanda" / "results_wanda.json").read_text())["status"] == "done"
    assert not (group / "ablate_mag_seq" / "results_ablate_mag_seq.json").exists()


def test_malformed_entry_is_refused_before_anything_runs(tiny_llama_dir, tmp_path, data_dir):
    proc = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,wanda_select:idf_power=abc")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "idf_power" in errors[0]
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_two_seed_sweep_gives_one_row_per_entry_with_spread(tiny_llama_dir, tmp_path, data_dir):
    proc = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,wanda_spiky:spiky_power=0.5",
                 "0.5", "2:4", extra=["--seeds", "0,1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    started = [line.split("] ", 1)[1].split(" ->")[0] for line in proc.stdout.splitlines()
               if line.startswith("=== [")]
    assert started == ["wanda seed 0", "wanda_spiky:spiky_power=0.5 seed 0",
                       "wanda seed 1", "wanda_spiky:spiky_power=0.5 seed 1"]  # seed-major
    group = tree(tmp_path, tiny_llama_dir) / "2-4" / "0.5"
    record = json.loads((group / "wanda_spiky__spiky_power=0.5" / "seed1" /
                         "results_wanda_spiky.json").read_text())
    assert record["seed"] == 1 and record["run_name"] == "wanda_spiky:spiky_power=0.5"
    assert record["method_options"]["spiky_power"] == 0.5
    rows = list(csv.DictReader((group / "summary.csv").open()))
    assert [r["method"] for r in rows] == ["wanda", "wanda_spiky:spiky_power=0.5"]
    assert all(r["seeds"] == "2" and float(r["ppl_sd"]) > 0 for r in rows)
    assert rows[1]["lower_on"].endswith("/2") and rows[1]["verdict"] in ("better", "worse", "n.s.")


def write_result(folder: Path, method: str, kind: str, ppl: float, seconds: float,
                 seed: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"method": method, "sparsity_type": kind, "sparsity_ratio": 0.5,
              "actual_sparsity": 0.5, "ppl_test": ppl, "prune_seconds": seconds,
              "status": "done", **({} if seed is None else {"seed": seed})}
    (folder / f"results_{method}.json").write_text(json.dumps(record))


def test_summary_table_from_hand_made_results(tmp_path):
    write_result(tmp_path / "u" / "wanda", "wanda", "unstructured", 50.0, 10.0)
    write_result(tmp_path / "u" / "wanda_select", "wanda_select", "unstructured", 45.0, 12.0)
    write_result(tmp_path / "u" / "magnitude", "magnitude", "unstructured", 500.0, 1.0)
    write_result(tmp_path / "n" / "wanda", "wanda", "2:4", 200.0, 10.0)
    write_result(tmp_path / "n" / "wanda_idf", "wanda_idf", "2:4", 250.0, 11.0)
    table, text = summary.write_summary([tmp_path], tmp_path / "s")
    got = [(r["method"], r["sparsity_type"], r["vs_baseline_pct"]) for r in table]
    assert got == [("wanda", "unstructured", 0.0), ("wanda_select", "unstructured",
                                                    pytest.approx(-10.0)),
                   ("magnitude", "unstructured", pytest.approx(900.0)),
                   ("wanda", "2:4", 0.0), ("wanda_idf", "2:4", pytest.approx(25.0))]
    lines = (tmp_path / "s" / "summary.csv").read_text().splitlines()
    assert lines[0].split(",")[0] == "method" and len(lines) == 6
    assert "-10.00%" in text and "+25.00%" in text
    md = (tmp_path / "s" / "summary.md").read_text().splitlines()
    assert md[0].startswith("| method |") and len(md) == 7


def test_plot_stats_draws_a_stats_file_and_refuses_others(tmp_path):
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    stats = {}
    for block in range(3):
        for linear in ("self_attn.q_proj", "mlp.down_proj"):
            name = f"model.layers.{block}.{linear}"
            norm = torch.rand(40, generator=gen) + 0.5
            norm[0] = 50.0  # one massive channel
            stats.update({f"{name}.norm": norm, f"{name}.active_frac": torch.rand(40),
                          f"{name}.idf": torch.rand(40), f"{name}.spikiness": torch.rand(40) + 1,
                          f"{name}.threshold": torch.tensor(0.3),
                          f"{name}.tokens": torch.tensor(64.0)})
    path = tmp_path / "stats.safetensors"
    save_file(stats, str(path))
    script = ROOT / "scripts" / "plot_stats.py"
    ok = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "p.png")],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "6 layers" in ok.stdout, ok.stderr
    assert (tmp_path / "p.png").stat().st_size > 10_000
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "other.safetensors"),
                          str(tmp_path / "q.png")], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_hazard_table_rows_match_a_direct_computation(tmp_path):
    import statistics

    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(1)
    name = "model.layers.0.mlp.down_proj"
    norm = (torch.rand(30, generator=gen) + 0.5).double()
    norm[[4, 20, 11]] = torch.tensor([9.0, 9.1, 30.0], dtype=torch.float64)
    fields = {"active_frac": torch.rand(30, generator=gen).double(),
              "idf": torch.rand(30, generator=gen).double(),
              "spikiness": (torch.rand(30, generator=gen) + 1).double()}
    save_file({f"{name}.norm": norm, **{f"{name}.{k}": v for k, v in fields.items()}},
              str(tmp_path / "s.safetensors"))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "hazard_table.py"),
                           str(tmp_path / "s.safetensors"), "--layers", name],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    cells = [c.strip() for c in done.stdout.splitlines()[2].strip("|").split("|")]
    values = norm.tolist()
    top = sorted(sorted(range(30), key=lambda i: -values[i])[:3])  # channel order
    assert top == [4, 11, 20] and cells[1] == "4, 11, 20"
    median = sorted(values)[14]  # torch's median of an even count is the lower middle
    assert cells[2] == ", ".join(f"{values[i] / median:.1f}" for i in top)
    assert cells[3] == ", ".join(f"{float(fields['active_frac'][i]):.2f}" for i in top)
    assert cells[4] == ", ".join(f"{float(fields['idf'][i]):.3f}" for i in top)
    spiky = fields["spikiness"].tolist()
    assert cells[5] == (", ".join(f"{spiky[i]:.1f}" for i in top)
                        + f" ({sorted(spiky)[14]:.1f})")
    active, logs = fields["active_frac"].tolist(), [math.log(v) for v in values]
    assert cells[6] == f"{statistics.correlation(active, logs):.2f}"


def test_entries_parse_and_reject():
    from lib.run.errors import UserError
    from lib.sweeps.entries import parse_entry, parse_seeds, split_entries

    entry = parse_entry("wanda_select:spiky_power=0.5,idf_power=0.25")
    assert entry.method == "wanda_select" and entry.label == \
        "wanda_select:idf_power=0.25,spiky_power=0.5"
    assert entry.flags() == ["--prune_method", "wanda_select", "--idf_power", "0.25",
                             "--spiky_power", "0.5"]
    assert parse_entry("wanda").label == "wanda" and parse_entry("wanda").flags() == \
        ["--prune_method", "wanda"]
    assert split_entries("wanda,wanda_idf:idf_power=0.5,idf_offset=1 wanda_spiky") == \
        ["wanda", "wanda_idf:idf_power=0.5,idf_offset=1", "wanda_spiky"]
    for bad in ("nope", "wanda_select:", "wanda_select:idf_power", "wanda_select:foo=1",
                "wanda_select:idf_power=x", "wanda_select:idf_power=1,idf_power=2",
                "wanda:idf_power=1", "wanda_idf:idf_power=inf"):
        with pytest.raises(UserError):
            parse_entry(bad)
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("", "a", "1,1"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_entries_take_every_declared_option_and_levels_plan_seed_by_seed():
    from lib.run.errors import UserError
    from lib.sweeps.entries import parse_entry
    from lib.sweeps.sweep import parse_args, planned_runs

    owl = parse_entry("wanda:layer_sparsity=owl,owl_lambda=0.1")
    assert owl.flags() == ["--prune_method", "wanda", "--layer_sparsity", "owl",
                           "--owl_lambda", "0.1"]
    assert parse_entry("ria:ria_compare=row").flags()[-2:] == ["--ria_compare", "row"]
    for bad in ("wanda:layer_sparsity=best", "ria:ria_power=-1", "wanda:owl_m=0"):
        with pytest.raises(UserError):
            parse_entry(bad)
    args, extra = parse_args(["m", "0.5,0.7", "--methods", "wanda,ria", "--seeds", "0,1", "--",
                              "--nsamples", "4"])
    runs = planned_runs(args, Path("root"))
    assert extra == ["--nsamples", "4"]
    assert [(e.method, level, seed) for e, level, seed, _ in runs] == [
        ("wanda", "0.5", 0), ("ria", "0.5", 0), ("wanda", "0.7", 0), ("ria", "0.7", 0),
        ("wanda", "0.5", 1), ("ria", "0.5", 1), ("wanda", "0.7", 1), ("ria", "0.7", 1)]
    assert runs[2][3] == Path("root/unstructured/0.7/wanda/seed0")


def test_seed_statistics_against_hand_computation(tmp_path):
    ppl = {"wanda": [100.0, 110.0, 105.0], "wanda_spiky": [98.0, 107.0, 104.0],
           "wanda_idf": [120.0, 125.0, 118.0]}
    for method, values in ppl.items():
        for seed, value in enumerate(values):
            write_result(tmp_path / method / f"seed{seed}", method, "2:4", value, 1.0, seed)
    table = {r["method"]: r for r in summary.comparison(summary.load_results([tmp_path]))}
    spiky = table["wanda_spiky"]
    diffs = [-2.0, -3.0, -1.0]  # per seed, against wanda
    mean = sum(diffs) / 3
    sd = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5  # = 1
    half = 4.302652729911275 * sd / 3 ** 0.5  # t(0.975, 2 df)
    assert spiky["diff_mean"] == pytest.approx(mean)
    assert spiky["diff_ci_low"] == pytest.approx(mean - half)
    assert spiky["diff_ci_high"] == pytest.approx(mean + half)
    assert spiky["lower_on"] == "3/3" and spiky["verdict"] == "n.s."  # interval crosses 0
    logs = [math.log(m / w) for m, w in zip(ppl["wanda_spiky"], ppl["wanda"])]
    log_mean = sum(logs) / 3
    log_half = 4.302652729911275 * (sum((v - log_mean) ** 2 for v in logs) / 2) ** 0.5 / 3 ** 0.5
    assert spiky["ratio"] == pytest.approx((98 / 100 * 107 / 110 * 104 / 105) ** (1 / 3))
    assert spiky["ratio_ci_low"] == pytest.approx(math.exp(log_mean - log_half))
    assert spiky["ratio_ci_high"] == pytest.approx(math.exp(log_mean + log_half))
    assert spiky["ppl_test"] == pytest.approx(103.0) and spiky["ppl_sd"] == pytest.approx(
        (sum((v - 103.0) ** 2 for v in ppl["wanda_spiky"]) / 2) ** 0.5)
    assert table["wanda_idf"]["verdict"] == "worse" and table["wanda_idf"]["lower_on"] == "0/3"
    assert table["wanda"]["verdict"] is None and table["wanda"]["seeds"] == 3


@pytest.mark.parametrize("diffs", [(-3.0, -2.0, -2.5), (1.0, 2.0, 1.5), (-3.0, 1.0, -0.5)])
def test_paired_verdict_follows_the_interval_of_the_difference(tmp_path, diffs):
    spec = importlib.util.spec_from_file_location(
        "paired_verdict", Path(__file__).parents[1] / "docs/results/paired_verdict.py")
    verdict = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdict)
    base = [100.0, 110.0, 105.0]
    for method, values in {"wanda": base, "wanda_x": [b + d for b, d in zip(base, diffs)]}.items():
        for seed, value in enumerate(values):
            write_result(tmp_path / method / f"seed{seed}", method, "unstructured", value, 1.0,
                         seed)
    mean = sum(diffs) / 3
    half = 4.302652729911275 * (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5
    expected = ("confirmed" if mean + half < 0 else "contradicted" if mean - half > 0
                else "not confirmed")
    lines = verdict.verdict_lines(tmp_path, "wanda_x", 5, "title")
    row = next(line for line in lines if line.startswith("| wanda_x |"))
    assert row.endswith(f"| {expected} |")
    assert f"[{mean - half:+.3f}, {mean + half:+.3f}]" in row
    assert "provisional until all 5" in lines[-2]


def test_broken_entries_go_off_scale_and_the_plot_draws(tmp_path):
    means = {"wanda": 190.0, "wanda_spiky": 185.0, "wanda_idf": 1799.0, "faithful": 4.3e6}
    # the median entry is 1799 (upper median of four); only 4.3e6 is 10x or more above it
    assert summary.off_scale(means) == {"faithful"}
    assert summary.off_scale({"a": 1.0, "b": 2.0, "c": 30.0}) == {"c"}
    assert summary.off_scale({}) == set()
    rows = [{"method": m, "sparsity_type": kind, "sparsity_ratio": 0.5, "seed": seed,
             "ppl_test": value * (1 + 0.01 * seed)}
            for kind in ("unstructured", "2:4") for m, value in means.items() for seed in range(3)]
    path = summary.plot_ppl_vs_sparsity(rows, tmp_path / "p.png")
    assert path.stat().st_size > 10_000


def test_paths_point_at_the_repository_root():
    """Modules that find the repository from their own file (the sweep launches main.py, the
    embedded models cache beside it) must climb out of their package."""
    from lib.io import embedded
    from lib.sweeps import sweep

    root = Path(__file__).resolve().parents[1]
    assert (sweep.ROOT / "main.py").is_file() and sweep.ROOT == root
    assert embedded.CACHE_ROOT == root / ".cache"
