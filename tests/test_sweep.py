"""The sweep script end to end on a tiny model, and the summary tool on hand-made files."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib import summary

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "run_selectivity_experiments.sh"


def sweep(model_dir, out_root, data_dir, methods: str, *sparsity) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), str(model_dir), *sparsity, "--methods", methods,
         "--out_root", str(out_root), "--", "--nsamples", "2", "--seqlen", "32",
         "--eval_windows", "2", "--data_dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_sweep_runs_resumes_and_survives_a_failed_run(tiny_llama_dir, tmp_path, data_dir):
    first = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,magnitude")
    assert first.returncode == 0, first.stderr[-2000:]
    group = tmp_path / "unstructured" / "0.5"
    for method in ("wanda", "magnitude"):
        record = json.loads((group / method / f"results_{method}.json").read_text())
        assert record["status"] == "done" and record["actual_sparsity"] == 0.5
    rows = list(csv.DictReader((group / "summary.csv").open()))
    assert [r["method"] for r in rows] == ["wanda", "magnitude"]
    assert float(rows[0]["vs_baseline_pct"]) == 0.0
    assert (group / "summary.md").is_file() and (group / "ppl_vs_sparsity.png").stat().st_size
    assert "magnitude" in first.stdout and "ppl_test" in first.stdout

    before = (group / "wanda" / "results_wanda.json").stat().st_mtime_ns
    second = sweep(tiny_llama_dir, tmp_path, data_dir, "wanda,not_a_method,magnitude")
    assert second.returncode != 0
    assert second.stdout.count("skipped (finished results exist)") == 2
    assert "not_a_method: FAILED" in second.stdout and "not_a_method" in second.stderr
    assert (group / "wanda" / "results_wanda.json").stat().st_mtime_ns == before


def write_result(folder: Path, method: str, kind: str, ppl: float, seconds: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"method": method, "sparsity_type": kind, "sparsity_ratio": 0.5,
              "actual_sparsity": 0.5, "ppl_test": ppl, "prune_seconds": seconds,
              "status": "done"}
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
