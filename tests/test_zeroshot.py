"""--eval_zero_shot through lm-evaluation-harness, offline, on a task the tests write."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_tasks import CAPITALS, write_capitals_task

import main
from lib.evaluation import zeroshot

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--seqlen", "64", "--eval_windows", "1"]


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    return write_capitals_task(tmp_path_factory.mktemp("tasks"))


def zero_shot_run(model_dir, save, data_dir, task_dir, *extra) -> dict:
    rc = main.main(["--model", str(model_dir), "--data_dir", str(data_dir), "--save", str(save),
                    *QUICK, "--eval_zero_shot", "--tasks", "capitals_local",
                    "--tasks_include_path", str(task_dir), *extra])
    assert rc == 0
    method = next(p.name for p in save.glob("zero_shot_*.json"))
    return json.loads((save / method).read_text())


@pytest.mark.slow
def test_tiny_model_writes_zero_shot_results(tiny_llama_dir, tmp_path, data_dir, task_dir):
    out = zero_shot_run(tiny_llama_dir, tmp_path, data_dir, task_dir, "--prune_method", "wanda",
                        "--sparsity_ratio", "0.5", "--nsamples", "2", "--zero_shot_limit", "8",
                        "--zero_shot_batch_size", "4")
    row = out["tasks"]["capitals_local"]
    assert set(row) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "samples"}
    assert row["samples"] == 8 and 0 <= row["acc"] <= 1 and out["mean_acc"] == row["acc"]
    assert out["method"] == "wanda" and out["limit"] == 8 and out["num_fewshot"] == 0
    record = json.loads((tmp_path / "results_wanda.json").read_text())
    assert record["zero_shot"]["acc"] == {"capitals_local": row["acc"]}
    assert record["zero_shot"]["file"] == "zero_shot_wanda.json" and record["status"] == "done"


@pytest.mark.slow
def test_smollm2_knows_capitals_until_heavily_pruned(smollm2_dir, tmp_path, data_dir, task_dir):
    dense = zero_shot_run(smollm2_dir, tmp_path / "dense", data_dir, task_dir)
    pruned = zero_shot_run(smollm2_dir, tmp_path / "mag90", data_dir, task_dir,
                           "--prune_method", "magnitude", "--sparsity_ratio", "0.9")
    chance = 1 / 4
    dense_acc = dense["tasks"]["capitals_local"]["acc"]
    assert dense["tasks"]["capitals_local"]["samples"] == len(CAPITALS)
    assert dense_acc > chance + 3 * dense["tasks"]["capitals_local"]["acc_stderr"]
    assert pruned["tasks"]["capitals_local"]["acc"] < dense_acc


def test_unknown_task_is_one_line(tiny_llama_dir, tmp_path, data_dir, task_dir, capsys):
    rc = main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data_dir), "--save",
                    str(tmp_path), *QUICK, "--eval_zero_shot", "--tasks", "no_such_task_xyz",
                    "--tasks_include_path", str(task_dir)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(err) == 1 and "no_such_task_xyz" in err[0]
    assert not (tmp_path / "results_dense.json").exists()  # refused before any work


@pytest.mark.slow
def test_unreachable_hub_dataset_names_the_task(tiny_llama_dir, tmp_path, data_dir):
    """No network here (and offline mode forced): boolq's Hub dataset cannot load."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=str(tmp_path / "empty_cache"))
    proc = subprocess.run([sys.executable, "main.py", "--model", str(tiny_llama_dir),
                           "--data_dir", str(data_dir), "--save", str(tmp_path), *QUICK,
                           "--eval_zero_shot", "--tasks", "boolq"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-2000:]
    assert "boolq" in errors[0] and "--tasks_include_path" in errors[0]


def test_summary_reads_the_harness_output():
    raw = {"results": {"a": {"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": "a"},
                       "b": {"acc,none": 0.25, "acc_stderr,none": 0.05,
                             "acc_norm,none": 0.75, "acc_norm_stderr,none": 0.02}},
           "n-samples": {"a": {"original": 10, "effective": 4}, "b": {"effective": 8}}}
    out = zeroshot.summarize(raw, ["a", "b"])
    assert out["tasks"]["a"] == {"acc": 0.5, "acc_stderr": 0.1, "acc_norm": None,
                                 "acc_norm_stderr": None, "samples": 4}
    assert out["tasks"]["b"]["acc_norm"] == 0.75 and out["mean_acc"] == 0.375
    assert zeroshot.parse_tasks(None) == list(zeroshot.DEFAULT_TASKS)
    assert zeroshot.parse_tasks(" rte, boolq ,") == ["rte", "boolq"]
