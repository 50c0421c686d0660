"""Results files (Wanda's log, a JSON record), configurations and package provenance; no torch,
so that --skip_if_done decides without it (hardware provenance and memory: lib/run/machine.py)."""
from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from lib.run.errors import UserError

# Keys that define a configuration: a results file with other values is another experiment.
CONFIG_KEYS = ("model", "method", "sparsity_type", "sparsity_ratio", "use_variant", "nsamples",
               "seed", "seqlen", "calib_dataset", "eval_windows", "dtype", "ppl_formula",
               "method_options", "layer_sparsity", "moe_calibration", "recovery")
# what a key meant in records written before it existed
CONFIG_DEFAULTS = {"moe_calibration": "routed"}
# every package whose version can move a number: kernels (torch, numpy, numba/llvmlite for the
# histogram), weights (gguf dequantizes the embedded models), tokens (tokenizers, sentencepiece)
PACKAGES = ("torch", "transformers", "tokenizers", "sentencepiece", "gguf", "safetensors",
            "datasets", "accelerate", "numpy", "numba", "llvmlite", "scipy", "lm_eval")


def results_path(save: str, method: str) -> Path:
    return Path(save) / f"results_{method}.json"


def config_of(record: dict) -> dict:
    return {k: record.get(k, CONFIG_DEFAULTS.get(k)) for k in CONFIG_KEYS}


class DamagedRecord(dict):
    """A results file that exists but is not a JSON object: matches no configuration."""


def _read_record(save: str, method: str) -> dict | None:
    """The results record already in `save`, None when there is none, or a DamagedRecord when
    the file is not a JSON object (truncated, edited, another tool's)."""
    path = results_path(save, method)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return DamagedRecord()
    return record if isinstance(record, dict) else DamagedRecord()


def finished(save: str, method: str, config: dict, needs: tuple[str, ...] = (),
             data_files: dict | None = None) -> bool:
    """True when `save` already holds a completed run of exactly this configuration (and the
    keys in `needs`, e.g. zero-shot results) on the same data files (size and SHA-256 of what
    it read; records written before fingerprints were kept are taken as they are)."""
    old = _read_record(save, method)
    same_data = (data_files is None or old is None or "data_files" not in old
                 or old["data_files"] == data_files)
    return (old is not None and old.get("status") == "done" and config_of(old) == config
            and all(key in old for key in needs) and same_data)


def check_save_dir(save: str, method: str, config: dict, overwrite: bool) -> None:
    """Refuse to replace the results of a different configuration in the same directory."""
    old = None if overwrite else _read_record(save, method)
    if old is None:
        return
    if isinstance(old, DamagedRecord):
        raise UserError(f"{results_path(save, method)} is not a results record (not a JSON "
                        "object); remove it or pass --overwrite")
    old = config_of(old)
    changed = [k for k in CONFIG_KEYS if old.get(k) != config.get(k)]
    if changed:
        raise UserError(f"{results_path(save, method)} holds results of a different "
                        f"configuration (differs in {', '.join(changed)}); use another --save "
                        "directory or pass --overwrite")


def _atomic_write(path: Path, text: str) -> None:
    from lib.io.writes import atomic_write_text

    atomic_write_text(path, text)


def write_results(save: str, method: str, record: dict) -> Path:
    return write_json(save, results_path(save, method).name, record)


def write_json(save: str, name: str, payload: dict) -> Path:
    path = Path(save) / name
    _atomic_write(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def write_wanda_log(save: str, method: str, actual_sparsity: float, ppl: float) -> Path:
    """Wanda's two tab-separated lines."""
    path = Path(save) / f"log_{method}.txt"
    _atomic_write(path, f"method\tactual_sparsity\tppl_test\n"
                        f"{method}\t{actual_sparsity:.4f}\t{ppl:.4f}\n")
    return path


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent, timeout=5)
        if commit.returncode == 0:
            found["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return found
