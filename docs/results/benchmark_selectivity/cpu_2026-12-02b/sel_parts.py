"""Where the selectivity methods' time goes beyond wanda's (wall time per part, seconds summed over one prune).

  python docs/results/benchmark_selectivity/cpu_2026-12-02b/sel_parts.py NSAMPLES SEQLEN METHODS [REPEATS]

The parts nest: sel_add_total holds wanda_add and flush; flush holds alloc; compute holds
layout, quantile, count_above and top_mean; prune_linear holds compute."""
import functools, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "scripts"))
import torch
from lib import data, layerwrapper, models, prune, sources, loghist
from lib.methods import METHODS
from lib.sparsity import parse_sparsity
n, L = int(sys.argv[1]), int(sys.argv[2])
methods = sys.argv[3].split(",")
src = sources.resolve_model("smollm2-135m")
tok = models.load_tokenizer(src, None)
model = models.load_model(src, torch.float32, torch.device("cpu"), None)
orig = {k: v.clone() for k, v in model.state_dict().items()}
samples = data.calibration_windows("c4", tok, n, 0, L, "../shared/data")
sp = parse_sparsity("unstructured", 0.5, False)
parts = {}
def timed(owner, name, key):
    fn = getattr(owner, name)
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try: return fn(*a, **k)
        finally: parts[key] = parts.get(key, 0) + time.perf_counter() - t
    setattr(owner, name, wrapper)
timed(prune, "run_block", "run_block")
timed(prune, "prune_linear", "prune_linear")
timed(layerwrapper.WrappedGPT, "add_batch", "wanda_add")
timed(layerwrapper.SelectivityWrappedGPT, "add_batch", "sel_add_total")
timed(layerwrapper.SelectivityWrappedGPT, "_flush", "flush")
timed(layerwrapper.SelectivityWrappedGPT, "_compute", "compute")
timed(loghist.LogHistogram, "_allocate", "alloc")
timed(loghist.LogHistogram, "_fold", "fold")
timed(loghist.LogHistogram, "quantile_all", "quantile")
timed(loghist.LogHistogram, "count_above", "count_above")
timed(loghist.LogHistogram, "top_mean", "top_mean")
timed(loghist.LogHistogram, "layout", "layout")
for r in range(int(sys.argv[4]) if len(sys.argv) > 4 else 2):
    for m in (methods if r % 2 == 0 else methods[::-1]):
        model.load_state_dict(orig); parts.clear()
        t = time.perf_counter()
        prune.prune_model(model, METHODS[m], sp, samples, METHODS[m].settings({}))
        w = time.perf_counter() - t
        print(f"repeat {r}: {m:13s} {w:.2f} s | " + " | ".join(f"{k} {v:.2f}" for k, v in parts.items()), flush=True)
