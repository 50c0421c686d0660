"""Where wanda_select's extra GPU time goes (issue 20): torch.profiler over one prune."""
import sys, time
import torch
sys.path.insert(0, ".")
from lib import data, models, sources
from lib.methods import METHODS
from lib.prune import prune_model
from lib.sparsity import parse_sparsity
from torch.profiler import profile, ProfilerActivity

device = torch.device("cuda")
source = sources.resolve_model(".devkit/model")
tok = models.load_tokenizer(source, None)
model = models.load_model(source, torch.float16, device, None)
orig = {k: v.clone() for k, v in model.state_dict().items()}
sp = parse_sparsity("unstructured", 0.5, False)
for n, L in ((16, 512), (4, 2048)):
    samples = data.calibration_windows("c4", tok, n, 0, L, ".devkit/data")
    for m in ("wanda", "wanda_select"):
        model.load_state_dict(orig)
        prune_model(model, METHODS[m], sp, samples, METHODS[m].settings({}))  # warm-up
        model.load_state_dict(orig)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            t = time.perf_counter()
            prune_model(model, METHODS[m], sp, samples, METHODS[m].settings({}))
            torch.cuda.synchronize()
            t = time.perf_counter() - t
        print(f"===== {m} {n}x{L}: {t:.3f} s")
        print(prof.key_averages(group_by_stack_n=0).table(sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=50))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=50))
        print(prof.key_averages(group_by_stack_n=0).table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=50))

# synchronized wall time per LogHistogram method (the profiler's op tables do not name them)
import collections, functools
from lib import loghist, layerwrapper
spent = collections.Counter()
def timed(owner, name):
    fn = getattr(owner, name)
    @functools.wraps(fn)
    def wrapper(*a, **k):
        torch.cuda.synchronize(); t = time.perf_counter()
        r = fn(*a, **k)
        torch.cuda.synchronize(); spent[name] += time.perf_counter() - t
        return r
    setattr(owner, name, wrapper)
for name in ("add", "_place_window", "_torch_scatter", "quantile_all", "count_above", "top_mean", "layout"):
    timed(loghist.LogHistogram, name)
timed(layerwrapper.WrappedGPT, "add_batch")
for n, L in ((16, 512), (4, 2048), (64, 2048)):
    samples = data.calibration_windows("c4", tok, n, 0, L, ".devkit/data")
    for m in ("wanda", "wanda_select"):
        model.load_state_dict(orig); spent.clear()
        torch.cuda.synchronize(); t = time.perf_counter()
        prune_model(model, METHODS[m], sp, samples, METHODS[m].settings({}))
        torch.cuda.synchronize()
        print(f"##### {m} {n}x{L}: {time.perf_counter() - t:.3f} s;", {k: round(v, 3) for k, v in spent.items()})
