import time, torch, sys
sys.path.insert(0, "/work/main")
from lib import masks
import numba
torch.manual_seed(0)
fast = masks._radix_lowest_k
for th in (1, 2):
    torch.set_num_threads(th); numba.set_num_threads(th)
    for shape in ((576, 1536), (1536, 576)):
        S = torch.randn(*shape).abs() * torch.rand(shape[1])
        def tm(fn, n=20):
            fn(); t = time.perf_counter()
            for _ in range(n): fn()
            return (time.perf_counter() - t) / n * 1e3
        masks._radix_lowest_k = fast; a = tm(lambda: masks.row_mask(S, 0.5))
        masks._radix_lowest_k = None; b = tm(lambda: masks.row_mask(S, 0.5))
        print(th, shape, f"radix {a:.2f} ms  kthvalue {b:.2f} ms", flush=True)
