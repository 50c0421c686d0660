"""Hash the prune masks every method produces on a real model, to show a refactor changed none.

Each method of the table runs through the CLI (so any version of the code can be hashed the same
way) at 50% unstructured and 2:4 with a small budget; the pruned model is saved, and the SHA-256
of every block linear's zero pattern (in name order) is recorded. `--check FILE` compares with a
recorded run and exits 1 on any difference. Hashes are bit-exact for one machine, torch build and
thread count; the script runs on one thread (SparseGPT's Hessian and OBS products reduce in another
order on two, which flips near-tied mask entries), and another CPU's float kernels may flip some too.

    python scripts/mask_hashes.py --out hashes.json
    python scripts/mask_hashes.py --check docs/results/mask_hashes/smollm2_4x256.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET = ["--nsamples", "4", "--seqlen", "256", "--eval_windows", "1", "--seed", "0"]
PATTERNS = {"unstructured": ["--sparsity_ratio", "0.5"], "2:4": ["--sparsity_type", "2:4"]}


def mask_hash(model_dir: Path) -> str:
    """SHA-256 over every decoder-block linear's (weight == 0) pattern, in tensor-name order."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors"))
    tensors = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                if ".layers." in name and name.endswith("proj.weight"):
                    tensors[name] = (file, name)
    for name in sorted(tensors):
        file, key = tensors[name]
        with safe_open(str(file), "pt") as f:
            zeros = (f.get_tensor(key) == 0).numpy()
        digest.update(name.encode())
        digest.update(zeros.tobytes())
    return digest.hexdigest()


def run_all(model: str, data_dir: str, methods: list[str]) -> dict[str, str]:
    import torch

    import main

    torch.set_num_threads(1)

    hashes = {}
    for method in methods:
        for pattern, flags in PATTERNS.items():
            with tempfile.TemporaryDirectory() as tmp:
                saved = Path(tmp) / "model"
                rc = main.main(["--model", model, "--data_dir", data_dir, "--prune_method", method,
                                *flags, *BUDGET, "--save", tmp, "--save_model", str(saved)])
                if rc != 0:
                    raise SystemExit(f"{method} {pattern} failed with exit status {rc}")
                hashes[f"{method} {pattern}"] = mask_hash(saved)
            print(f"{method:20s} {pattern:13s} {hashes[f'{method} {pattern}']}", flush=True)
    return hashes


def main_cli() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--methods", default=None, help="comma-separated (default: the whole table)")
    p.add_argument("--out", default=None, help="write the hashes to this JSON file")
    p.add_argument("--check", default=None, help="compare with the hashes in this JSON file")
    args = p.parse_args()
    from lib.pruning.methods import METHODS

    methods = args.methods.split(",") if args.methods else list(METHODS)
    hashes = run_all(args.model, args.data_dir, methods)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(hashes, indent=2) + "\n")
    if args.check:
        expected = json.loads(Path(args.check).read_text())
        differ = [k for k in expected if k in hashes and hashes[k] != expected[k]]
        missing = [k for k in expected if k not in hashes]
        print(f"{len(expected) - len(differ) - len(missing)} of {len(expected)} identical; "
              f"differ: {differ or 'none'}; not run: {missing or 'none'}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
