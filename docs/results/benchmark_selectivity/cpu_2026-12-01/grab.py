import sys, torch
sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from lib import data, models, sources
src = sources.resolve_model("smollm2-135m")
tok = models.load_tokenizer(src, None)
model = models.load_model(src, torch.float32, torch.device("cpu"), None)
samples = data.calibration_windows("c4", tok, 16, 0, 512, "/work/shared/data")
blocks = models.decoder_layers(model)
got = {}
def hook(name):
    def f(m, a, o): got.setdefault(name, []).append(a[0].detach().reshape(-1, a[0].shape[-1]).clone())
    return f
for b in (2, 15, 28):
    blocks[b].self_attn.q_proj.register_forward_hook(hook(f"{b}.q"))
    blocks[b].mlp.down_proj.register_forward_hook(hook(f"{b}.down"))
with torch.no_grad():
    for s in samples: model(s, use_cache=False)
torch.save({k: torch.cat(v) for k, v in got.items()}, "/tmp/p20/acts.pt")
print({k: torch.cat(v).shape for k, v in got.items()})
