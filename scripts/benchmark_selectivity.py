#!/usr/bin/env python
"""Side-by-side cost of pruning: the forward-pass floor, wanda, and the selectivity methods.

All measurements run in one process on the same model and calibration windows, in rotating
order, each repeated; the minimum time and the peak memory of each are compared as ratios,
and, since a shared machine's speed drifts between repeats, each run's time over the same
repeat's wanda (median and range over the repeats):
  floor   = capture the first block's inputs + two plain block-by-block passes (no hooks),
            what any Wanda-style pruner pays;
  wanda   = prune with wanda;  wanda_* = prune with each selectivity method
(the timed span is prune_model, what a run's prune_seconds covers; restoring the dense weights
before each run is outside it).
Peak memory is CUDA max allocated on GPU, peak RSS (reset between runs) on CPU.
The dense weights are kept for restoring in memory (--originals memory) or, where a second copy
of the model does not fit beside it, in a file in a folder this script creates and removes
(--originals disk), read back memory-mapped and released before each timed run.

  python scripts/benchmark_selectivity.py --model smollm2-135m --data_dir ../shared/data \
      --nsamples 32 --seqlen 512
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.arch.blocks import decoder_layers  # noqa: E402
from lib.io import (
    data,
    models,
    sources,  # noqa: E402
)
from lib.pruning.methods import BASELINE, METHODS  # noqa: E402
from lib.pruning.prune import prune_model  # noqa: E402
from lib.pruning.replay import capture_block_inputs, run_block  # noqa: E402
from lib.pruning.sparsity import parse_sparsity  # noqa: E402
from lib.io.writes import atomic_write_text  # noqa: E402
from lib.run import machine  # noqa: E402

CANDIDATES = ("wanda_idf", "wanda_spiky", "wanda_select")


@torch.no_grad()
def floor_passes(model, samples) -> None:
    captured = capture_block_inputs(model, samples)
    inps = captured.hidden
    outs = torch.empty_like(inps)
    for index, block in enumerate(decoder_layers(model)):
        kwargs = captured.kwargs_for(index, inps.device)
        run_block(block, inps, kwargs, outs)
        run_block(block, inps, kwargs, outs)
        inps, outs = outs, inps


def measure(fn, device, prepare=None) -> tuple[float, int, int]:
    """Seconds, peak memory, and peak memory above what was in use when the run started;
    `prepare` runs first, outside both."""
    if prepare is not None:
        prepare()
    machine.reset_peak_memory(device)
    baseline = machine.current_memory_bytes(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = machine.peak_memory_bytes(device)
    return seconds, peak, peak - baseline


def summarize(runs: dict[str, list[tuple[float, int, int]]]) -> dict[str, dict]:
    """Per job, from its (seconds, peak, peak over start) of every repeat: the best time, the
    largest peaks, every repeat's time and the paired time over wanda."""
    times = {name: [seconds for seconds, _, _ in rows] for name, rows in runs.items()}
    paired = paired_ratios(times)
    return {name: {"best_seconds": min(times[name]),
                   "peak_bytes": max(peak for _, peak, _ in rows),
                   "extra_bytes": max(extra for _, _, extra in rows),
                   "seconds": times[name], "paired_time_over_wanda": list(paired[name])}
            for name, rows in runs.items()}


def paired_ratios(times: dict[str, list[float]], reference: str = BASELINE
                  ) -> dict[str, tuple[float, float, float]]:
    """Median, lowest and highest of each run's time over the reference's time in the same
    repeat: a repeat's slow spell hits both, so this drifts less than the ratio of best times."""
    result = {}
    for name, seconds in times.items():
        ratios = [s / ref for s, ref in zip(seconds, times[reference])]
        result[name] = (statistics.median(ratios), min(ratios), max(ratios))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--nsamples", type=int, default=32)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--sparsity_type", default="unstructured")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--methods", default=",".join(CANDIDATES))
    p.add_argument("--json", default=None,
                   help="also write the table, settings and machine to this JSON file")
    p.add_argument("--originals", choices=("memory", "disk"), default="memory",
                   help="where the dense weights wait between runs: disk halves the peak for a "
                        "model that does not fit twice (the file goes to a temporary folder)")
    args = p.parse_args()
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        p.error(f"--methods: {unknown[0]} is not a method; choose from {', '.join(METHODS)}")
    with contextlib.ExitStack() as stack:
        return run(args, stack)


def keep_originals(model: torch.nn.Module, where: str, stack: contextlib.ExitStack):
    """A function that puts the model's dense weights back; with `disk` they live in a file in a
    folder made here (and removed on exit, as only this script made it)."""
    if where == "memory":
        original = {k: v.clone() for k, v in model.state_dict().items()}
        return lambda: model.load_state_dict(original)
    folder = Path(tempfile.mkdtemp(prefix="benchmark_originals_"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "dense.pt"
    torch.save(model.state_dict(), path)

    def restore():  # mapped, copied in, unmapped: nothing of it stays resident
        model.load_state_dict(torch.load(path, mmap=True, weights_only=True))
    return restore


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:

    from lib.run.plan import resolve_device, resolve_dtype

    device = torch.device(resolve_device(args.device))
    dtype = getattr(torch, resolve_dtype(args.dtype, str(device)))
    source = sources.resolve_model(args.model)
    tokenizer = models.load_tokenizer(source, None)
    base = models.load_model(source, dtype, device, None)
    restore = keep_originals(base, args.originals, stack)
    samples = data.calibration_windows("c4", tokenizer, args.nsamples, 0, args.seqlen,
                                       args.data_dir)
    sparsity = parse_sparsity(args.sparsity_type, 0.5 if args.sparsity_type == "unstructured"
                              else 0, False)

    def pruner(method):
        def run():
            # each method with its CLI defaults (e.g. floor 1 for wanda_idf and wanda_select)
            prune_model(base, METHODS[method], sparsity, samples, METHODS[method].settings({}))
        return run

    jobs = {"floor": lambda: floor_passes(base, samples), "wanda": pruner("wanda")}
    for m in args.methods.split(","):
        jobs[m] = pruner(m)
    names = list(jobs)
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in jobs}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            seconds, peak, extra = measure(jobs[name], device, restore)
            runs[name].append((seconds, peak, extra))
            print(f"repeat {r} {name:14s} {seconds:8.2f} s  peak {peak / 2**20:8.1f} MiB  "
                  f"(+{extra / 2**20:.1f} MiB over start)", flush=True)
    table = summarize(runs)
    print(f"\n{args.model} | {device} {dtype} | {args.nsamples} x {args.seqlen} tokens | "
          f"{args.sparsity_type} | best of {args.repeats} | originals in {args.originals}")
    print(f"{'run':14s} {'seconds':>8s} {'peak MiB':>9s} {'+MiB':>8s} {'time/wanda':>11s} "
          f"{'peak/wanda':>11s} {'+mem/wanda':>11s}  paired time/wanda: median [range]")
    wanda = table["wanda"]
    for name, row in table.items():
        median, low, high = row["paired_time_over_wanda"]
        print(f"{name:14s} {row['best_seconds']:8.2f} {row['peak_bytes'] / 2**20:9.1f} "
              f"{row['extra_bytes'] / 2**20:8.1f} "
              f"{row['best_seconds'] / wanda['best_seconds']:11.3f} "
              f"{row['peak_bytes'] / wanda['peak_bytes']:11.3f} "
              f"{row['extra_bytes'] / max(wanda['extra_bytes'], 1):11.3f}"
              f"  {median:.3f} [{low:.3f}, {high:.3f}]")
    print(f"wanda / floor time: {wanda['best_seconds'] / table['floor']['best_seconds']:.3f}")
    if args.json:
        record = {"model": args.model, "device": str(device), "dtype": str(dtype),
                  "nsamples": args.nsamples, "seqlen": args.seqlen,
                  "sparsity_type": args.sparsity_type, "repeats": args.repeats,
                  "originals": args.originals, "machine": machine.machine_record(device),
                  "runs": table}
        atomic_write_text(Path(args.json), json.dumps(record, indent=1) + "\n")
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
