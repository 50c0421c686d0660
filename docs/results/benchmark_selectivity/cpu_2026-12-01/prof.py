import sys, time, torch, collections
sys.path.insert(0, "/work/main")
torch.set_num_threads(int(__import__('os').environ.get('TH', '1')))
from lib import data, models, sources, prune, layerwrapper, replay
from lib.methods import METHODS
from lib.sparsity import parse_sparsity
src = sources.resolve_model("smollm2-135m")
tok = models.load_tokenizer(src, None)
model = models.load_model(src, torch.float32, torch.device("cpu"), None)
orig = {k: v.clone() for k, v in model.state_dict().items()}
n, L = int(sys.argv[1]), int(sys.argv[2])
methods = sys.argv[3].split(",")
samples = data.calibration_windows("c4", tok, n, 0, L, "/work/shared/data")
sp = parse_sparsity("unstructured", 0.5, False)
T = collections.defaultdict(float)
def timed(name, fn):
    def w(*a, **k):
        t = time.perf_counter(); r = fn(*a, **k); T[name] += time.perf_counter() - t; return r
    return w
prune.prune_linear = timed("prune_linear", prune.prune_linear)
prune.run_block = timed("run_block", prune.run_block)
prune.capture_block_inputs = timed("capture", prune.capture_block_inputs)
for cls in (layerwrapper.WrappedGPT, layerwrapper.SelectivityWrappedGPT):
    cls.add_batch = timed(f"add_batch {cls.__name__}", cls.add_batch)
layerwrapper.SelectivityWrappedGPT._compute = timed("sel_compute", layerwrapper.SelectivityWrappedGPT._compute)
import lib.loghist as lh, os
if os.environ.get("HISTCFG"):
    k, z, w = os.environ["HISTCFG"].split(":")
    lh.LogHistogram.__init__.__defaults__ = (int(k), None, int(z), float(w))
layerwrapper.SelectivityWrappedGPT._compute = layerwrapper.SelectivityWrappedGPT._compute
lh.LogHistogram.add = timed("hist.add", lh.LogHistogram.add)
lh.LogHistogram._fused_add = timed("hist.kernel", lh.LogHistogram._fused_add)
lh.LogHistogram._fold = timed("hist.fold", lh.LogHistogram._fold)
for name in ("quantile_all", "count_above", "top_mean", "layout"):
    setattr(lh.LogHistogram, name, timed("read." + name, getattr(lh.LogHistogram, name)))
from lib import masks, sparsity
masks._lowest_k = timed("mask.lowest_k", masks._lowest_k)
import importlib.util, time as _t
spec = importlib.util.spec_from_file_location("bench", "/work/main/scripts/benchmark_selectivity.py")
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
if "floor" in methods:
    methods.remove("floor")
    for rep in range(2):
        T.clear(); t = _t.perf_counter(); bench.floor_passes(model, samples)
        print("floor", rep, f"total {_t.perf_counter() - t:.2f}", flush=True)
for m in methods:
  for rep in range(int(sys.argv[4]) if len(sys.argv) > 4 else 2):
    model.load_state_dict(orig); T.clear()
    t = time.perf_counter()
    prune.prune_model(model, METHODS[m], sp, samples, METHODS[m].settings({k: int(v) for k, v in [kv.split("=") for kv in os.environ.get("OPTS", "").split(",") if kv]}))
    tot = time.perf_counter() - t
    print(m, rep, f"total {tot:.2f}", {k: round(v, 2) for k, v in T.items()}, flush=True)
