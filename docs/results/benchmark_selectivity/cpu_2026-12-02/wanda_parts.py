"""Where wanda's prune time goes beyond the floor's two passes (wall time per part).

  python docs/results/benchmark_selectivity/cpu_2026-12-02/wanda_parts.py NSAMPLES SEQLEN [DATA_DIR]

run_block covers both passes of every block, the statistic hooks (add_batch) included."""
import functools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import torch
from lib import data, layerwrapper, models, prune, sources
from lib.methods import METHODS
from lib.sparsity import parse_sparsity
from benchmark_selectivity import floor_passes

n, L = int(sys.argv[1]), int(sys.argv[2])
src = sources.resolve_model("smollm2-135m")
tok = models.load_tokenizer(src, None)
model = models.load_model(src, torch.float32, torch.device("cpu"), None)
orig = {k: v.clone() for k, v in model.state_dict().items()}
samples = data.calibration_windows("c4", tok, n, 0, L, sys.argv[3] if len(sys.argv) > 3 else "../shared/data")
sp = parse_sparsity("unstructured", 0.5, False)
parts = {}
def timed(owner, name, key):
    fn = getattr(owner, name)
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            parts[key] = parts.get(key, 0) + time.perf_counter() - t
    setattr(owner, name, wrapper)
timed(prune, "run_block", "run_block (both passes)")
timed(prune, "capture_block_inputs", "capture")
timed(prune, "prune_linear", "prune_linear (score+mask+zero)")
timed(layerwrapper.WrappedGPT, "add_batch", "add_batch")
for r in range(2):
    model.load_state_dict(orig)
    t = time.perf_counter(); floor_passes(model, samples); f = time.perf_counter() - t
    model.load_state_dict(orig); parts.clear()
    t = time.perf_counter()
    prune.prune_model(model, METHODS["wanda"], sp, samples, METHODS["wanda"].settings({}))
    w = time.perf_counter() - t
    print(f"repeat {r}: floor {f:.2f} s, wanda {w:.2f} s ({w/f:.3f}x) | " +
          " | ".join(f"{k} {v:.2f}" for k, v in parts.items()), flush=True)
