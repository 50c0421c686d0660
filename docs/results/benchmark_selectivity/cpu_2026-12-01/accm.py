import sys, torch, math
sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from lib import data, models, sources
from lib.layerwrapper import ExactSelectivityWrappedGPT, SelectivityWrappedGPT
from lib.loghist import LogHistogram
from lib.prune import find_linears
configs = [tuple(float(v) if "." in v else int(v) for v in c.split(":")) for c in sys.argv[1:]]
src = sources.resolve_model("smollm2-135m")
tok = models.load_tokenizer(src, None)
model = models.load_model(src, torch.float32, torch.device("cpu"), None)
windows = data.calibration_windows("c4", tok, 8, 0, 512, "/work/shared/data")
stats, handles = {}, []
for i, block in enumerate(models.decoder_layers(model)):
    seen = set()
    for name, lin in find_linears(block).items():
        g = name.rsplit(".", 1)[0] + (".down" if "down" in name else ".o" if "o_proj" in name else "")
        if g in seen: continue
        seen.add(g)
        group = [ExactSelectivityWrappedGPT(lin.in_features, torch.device("cpu"))]
        for k, z, w in configs:
            st = SelectivityWrappedGPT(lin.in_features, torch.device("cpu"), 0.6)
            st.hist = LogHistogram(lin.in_features, torch.device("cpu"), mantissa_bits=k, zoom_quantile=0.6, zoom_bits=z, zoom_half_width=w)
            group.append(st)
        stats[f"{i}.{name}"] = group
        handles.append(lin.register_forward_hook(lambda m, a, o, group=group: (None, [s.add_batch(a[0]) for s in group])[0]))
with torch.no_grad():
    for ids in windows: model(ids, use_cache=False)
for ci, c in enumerate(configs):
    worst = {"threshold": (0, ""), "active": (0, ""), "spiky": (0, "")}
    for key, group in stats.items():
        e = group[0].selectivity(0.6, 0.1); h = group[ci + 1].selectivity(0.6, 0.1)
        errs = {"threshold": abs(h.threshold - e.threshold) / e.threshold,
                "active": float((h.active_frac - e.active_frac).abs().max()),
                "spiky": float(((h.spikiness - e.spikiness).abs() / e.spikiness).max())}
        for n, v in errs.items(): worst[n] = max(worst[n], (v, key))
    print(c, {n: (f"{v:.2e}", k) for n, (v, k) in worst.items()}, flush=True)
