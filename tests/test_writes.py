"""What a run writes: it never replaces what it did not write, two runs never write one folder,
and files and model folders appear whole or not at all (lib/io/writes.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import FAST, error_line, load_results

import main
from lib.io import writes
from lib.run.errors import EXIT_SKIPPED

ROOT = Path(__file__).resolve().parents[1]


def run(model_dir, save, data_dir, *extra) -> int:
    return main.main(["--model", str(model_dir), "--data_dir", str(data_dir), "--save",
                      str(save), *FAST, "--prune_method", "magnitude", "--sparsity_ratio", "0.5",
                      *extra])


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_model_refuses_a_folder_it_did_not_write(tiny_llama_dir, tmp_path, data_dir,
                                                       capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("a user's file")
    assert run(tiny_llama_dir, tmp_path / "out", data_dir, "--save_model", str(target)) == 2
    assert "did not write" in error_line(capsys)
    assert files_of(target) == {"notes.txt": b"a user's file"}


@pytest.mark.parametrize("inside", [False, True])
def test_save_model_into_the_input_model_is_refused(inside, tiny_llama_dir, tmp_path, data_dir,
                                                     capsys):
    before = files_of(tiny_llama_dir)
    target = tiny_llama_dir / "pruned" if inside else tiny_llama_dir
    assert run(tiny_llama_dir, tmp_path / "out", data_dir, "--save_model", str(target),
               "--overwrite") == 2
    assert "input model's folder" in error_line(capsys)
    assert files_of(tiny_llama_dir) == before


@pytest.mark.parametrize("offload", [False, True])
def test_a_previous_save_is_replaced_whole_and_named_in_the_results(offload, tiny_llama_dir,
                                                                     tmp_path, data_dir):
    target = tmp_path / "pruned"
    flags = ["--save_model", str(target)] + (["--offload"] if offload else [])
    for seed in ("0", "1"):
        assert run(tiny_llama_dir, tmp_path / seed, data_dir, "--seed", seed, *flags) == 0
        saved = load_results(tmp_path / seed, "magnitude")["saved_model"]
        marker = json.loads((target / writes.MARKER).read_text())
        assert saved["weights_sha256"] == marker["weights_sha256"]
        assert saved["weights_sha256"] == writes.folder_manifest(target)["weights_sha256"]
        assert marker["seed"] == int(seed)
    # nothing left beside it but the folder and its lock file
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".pruned")) == [
        ".pruned.lock"]


def test_a_killed_runs_temporaries_are_removed_and_a_live_ones_kept(tiny_llama_dir, tmp_path,
                                                                    data_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".pruned.tmp-{dead}-abc123"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.safetensors").write_bytes(b"0" * 1000)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = tmp_path / f".pruned.tmp-{live.pid}-xyz"
        kept.mkdir()
        assert run(tiny_llama_dir, tmp_path / "out", data_dir,
                   "--save_model", str(tmp_path / "pruned")) == 0
        assert not stale.exists() and kept.exists()
    finally:
        live.kill()


def test_a_second_run_into_a_locked_folder_is_refused(tiny_llama_dir, tmp_path, data_dir,
                                                       capsys):
    save = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
         "from lib.io import writes; writes.lock_results_dir(sys.argv[2]); print('locked', "
         "flush=True); time.sleep(60)", str(ROOT), str(save)], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run(tiny_llama_dir, save, data_dir) == 2
        assert f"in use by another run (PID {holder.pid})" in error_line(capsys)
        assert not (save / "results_magnitude.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(tiny_llama_dir, save, data_dir) == 0  # the lock died with its process


WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from lib.run import results
for i in range(200):
    results.write_json(sys.argv[2], "results_x.json", {"writer": sys.argv[3], "i": i,
                                                       "pad": "x" * 5000})
"""


def test_two_processes_writing_one_results_file_never_leave_it_broken(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(tmp_path), str(w)],
                              stderr=subprocess.PIPE, text=True) for w in range(2)]
    path = tmp_path / "results_x.json"
    reads = 0
    while any(p.poll() is None for p in procs):
        if path.exists():
            json.loads(path.read_text())  # never a partial file
            reads += 1
        time.sleep(0.001)
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert reads > 0 and json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["results_x.json"]  # no temporaries


def test_an_output_under_a_file_is_refused_at_planning(tiny_llama_dir, tmp_path, data_dir,
                                                        capsys):
    (tmp_path / "a_file").write_text("")
    assert run(tiny_llama_dir, tmp_path / "a_file" / "out", data_dir) == 2
    assert "not a writable folder" in error_line(capsys)


def test_a_results_file_that_is_not_a_record_ends_in_one_line(tiny_llama_dir, tmp_path,
                                                               data_dir, capsys):
    from lib.sweeps import summary

    save = tmp_path / "out"
    save.mkdir()
    (save / "results_magnitude.json").write_text("[]")
    assert run(tiny_llama_dir, save, data_dir, "--skip_if_done") == 2
    assert "not a results record" in error_line(capsys)
    assert summary.load_results([save]) == []
    assert "left out" in capsys.readouterr().err
    assert run(tiny_llama_dir, save, data_dir, "--overwrite") == 0


def damaged_c4(folder: Path, kind: str) -> None:
    import gzip

    path = folder / "c4" / "en" / "c4-train.00000-of-01024.first1000.json.gz"
    path.parent.mkdir(parents=True)
    good = gzip.compress(b'{"text": "a document"}\n' * 50)
    payload = {"truncated": good[:len(good) // 2], "not gzip": b"plain text",
               "empty": gzip.compress(b""), "no text": gzip.compress(b'{"url": "x"}\n'),
               "not utf-8": gzip.compress(b'{"text": "\xff\xfe"}\n')}[kind]
    path.write_bytes(payload)


@pytest.mark.parametrize("kind,needle", [
    ("truncated", "is truncated"), ("not gzip", "is not gzip"), ("empty", "holds no documents"),
    ("no text", 'has no "text"'), ("not utf-8", "is not UTF-8")])
def test_a_damaged_c4_file_ends_in_one_line(kind, needle, tiny_llama_dir, tmp_path, data_dir,
                                           capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir / "wikitext-2-raw", data / "wikitext-2-raw")
    damaged_c4(data, kind)
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data), "--save",
                      str(tmp_path / "out"), *FAST, "--prune_method", "wanda",
                      "--sparsity_ratio", "0.5"]) == 2
    assert needle in error_line(capsys)


def test_a_wikitext_file_that_is_not_utf8_ends_in_one_line(tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "wikitext-2-raw").mkdir(parents=True)
    (data / "wikitext-2-raw" / "wiki.test.raw").write_bytes(b"\xff\xfe text")
    assert main.main(["--model", str(tiny_llama_dir), "--data_dir", str(data), "--save",
                      str(tmp_path / "out"), *FAST]) == 2
    assert "is not UTF-8" in error_line(capsys)


def test_a_damaged_token_cache_entry_is_made_again(tokenizer, tmp_path, monkeypatch):
    from lib.io import data, embedded

    monkeypatch.setattr(embedded, "CACHE_ROOT", tmp_path)
    first = data.cached_token_ids(tokenizer, "some text to tokenize " * 20)
    (entry,) = (tmp_path / "tokens").glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    again = data.cached_token_ids(tokenizer, "some text to tokenize " * 20)
    assert again.tolist() == first.tolist()
    again = data.cached_token_ids(tokenizer, "some text to tokenize " * 20)  # rewritten: a hit
    assert again.tolist() == first.tolist()


@pytest.mark.slow
def test_a_truncated_gguf_says_it_is_truncated(tmp_path, data_dir, capsys):
    from lib.io import sources

    whole = sources.resolve_model("smollm2-135m")
    data = (Path(whole.path) / whole.gguf_file).read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:len(data) // 2])
    assert main.main(["--model", str(cut), "--data_dir", str(data_dir), "--save",
                      str(tmp_path / "out"), *FAST]) == 2
    assert f"is truncated: {len(data) - len(data) // 2} bytes" in error_line(capsys)


def test_a_killed_sweep_driver_takes_its_run_with_it(tmp_path):
    """The driver (lib.sweeps.runner.run_logged in a process of its own) starts a long child and is
    killed with SIGKILL: the child ends too, and what it printed is in its log."""
    import os
    import signal

    # one write (an unbuffered print writes its parts one by one)
    child = "import os, sys, time; sys.stdout.write(f'child {os.getpid()}\\n'); time.sleep(120)"
    driver = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from pathlib import Path; from lib.sweeps.runner import run_logged; "
         "run_logged([sys.executable, '-c', sys.argv[2]], Path(sys.argv[3]), Path('.'))",
         str(ROOT), child, str(tmp_path / "run.log")], stdout=subprocess.PIPE, text=True)
    line = driver.stdout.readline()
    pid = int(line.split()[1])
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the run outlived its killed driver")
    assert (tmp_path / "run.log").read_text().startswith(f"child {pid}")


def test_skip_if_done_reruns_when_a_data_file_changed(tiny_llama_dir, tmp_path, data_dir):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(data_dir / "wikitext-2-raw", data / "wikitext-2-raw")
    shutil.copytree(data_dir / "c4", data / "c4")
    argv = ["--model", str(tiny_llama_dir), "--data_dir", str(data), "--save",
            str(tmp_path / "out"), *FAST, "--prune_method", "wanda", "--sparsity_ratio", "0.5",
            "--skip_if_done"]
    assert main.main(argv) == 0
    first = load_results(tmp_path / "out", "wanda")
    assert first["data_files"]["c4"]["bytes"] == (data / "c4" / "en").iterdir().__next__(
        ).stat().st_size
    assert main.main(argv) == EXIT_SKIPPED  # same data
    assert load_results(tmp_path / "out", "wanda")["prune_seconds"] == first["prune_seconds"]
    test = data / "wikitext-2-raw" / "wiki.test.raw"
    test.write_text(test.read_text()[:len(test.read_text()) // 2])
    assert main.main(argv) == 0  # run again: the evaluation text is another
    again = load_results(tmp_path / "out", "wanda")
    assert again["data_files"]["wikitext_test"] != first["data_files"]["wikitext_test"]
    assert again["data_files"]["c4"] == first["data_files"]["c4"]


def test_a_rerun_keeps_the_finished_record_until_its_own_result(tiny_llama_dir, tmp_path,
                                                               data_dir, monkeypatch):
    from lib.run import pipeline

    save = tmp_path / "out"
    assert run(tiny_llama_dir, save, data_dir) == 0
    done = load_results(save, "magnitude")
    log = (save / "log_magnitude.txt").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("killed during evaluation")

    monkeypatch.setattr(pipeline, "perplexity", broken)
    with pytest.raises(RuntimeError):
        run(tiny_llama_dir, save, data_dir)
    assert load_results(save, "magnitude") == done
    assert (save / "log_magnitude.txt").read_text() == log


def test_a_full_disk_says_so_and_keeps_the_previous_file(tmp_path, monkeypatch):
    import errno
    import io

    from lib.run.errors import UserError

    path = tmp_path / "results_x.json"
    writes.atomic_write_text(path, '{"old": 1}')

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = writes.os.fdopen
    monkeypatch.setattr(writes.os, "fdopen", lambda fd, mode: (real(fd, mode).close(), Full())[1])
    with pytest.raises(UserError, match="disk is full"):
        writes.atomic_write_text(path, '{"new": 2}')
    assert path.read_text() == '{"old": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["results_x.json"]


def test_a_save_killed_before_it_is_whole_leaves_the_old_model_and_no_claim(tiny_llama_dir,
                                                                           tmp_path, data_dir):
    """SIGKILL (test hook) after the weights are written, before the folder is renamed into
    place: the previous save stays whole, the results do not name the new model, and the next
    run removes the dead run's temporary."""
    import os

    target = tmp_path / "pruned"
    assert run(tiny_llama_dir, tmp_path / "first", data_dir, "--save_model", str(target)) == 0
    before = files_of(target)
    argv = [sys.executable, str(ROOT / "main.py"), "--model", str(tiny_llama_dir), "--data_dir",
            str(data_dir), "--save", str(tmp_path / "second"), *FAST, "--prune_method", "wanda",
            "--sparsity_ratio", "0.5", "--save_model", str(target)]
    killed = subprocess.run(argv, cwd=ROOT, capture_output=True,
                            env=dict(os.environ, WANDA_KILL_AT="before_publish"))
    assert killed.returncode == -9
    assert files_of(target) == before
    second = load_results(tmp_path / "second", "wanda")
    assert second["status"] == "pruned" and "saved_model" not in second
    assert [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the dead run's temporary
    assert subprocess.run(argv, cwd=ROOT, capture_output=True).returncode == 0
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert load_results(tmp_path / "second", "wanda")["saved_model"]["weights_sha256"] == \
        writes.folder_manifest(target)["weights_sha256"]


@pytest.mark.slow
def test_a_damaged_converted_copy_is_made_again(tmp_path, caplog):
    import dataclasses

    import torch

    from lib.io import models, sources

    source = dataclasses.replace(sources.resolve_model("smollm2-135m"),
                                 converted=str(tmp_path / "converted"))
    folder = models.ensure_converted(source)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short
    model = models.load_model(source, torch.float32, torch.device("cpu"), None)
    assert len(model.model.layers) == 30
    assert "converting the GGUF again" in caplog.text
    assert writes.is_ours(folder) and weights.stat().st_size > 500_000_000
