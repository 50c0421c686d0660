"""Per-window perplexity progress on disk, so that a long evaluation that dies (a killed job, a
machine taken back) resumes at the window where it stopped instead of starting over.

A file holds one evaluation's per-window values and is named by a key of everything those
values depend on: a digest of the model's weights and of its configuration, the window length,
the formula, the token stream, and what computes them (device, threads, torch and transformers
versions, attention implementation: each can move a window's value in its last bits, and a
resumed run must give the uninterrupted run's number). Whatever run evaluates the same weights
on the same windows (a rerun of the command, or `--prune_method dense` on the model a pruning
run saved with --save_model) picks up the finished windows; anything else gets a file of its
own. A file that cannot be read (truncated, not ours) is ignored with a warning and rewritten.
Files stay after the evaluation: they hold every window's value, for window-level comparisons.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from lib.io.writes import atomic_write_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PREFIX = "ppl_windows_"


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (so that the
    order tensors are visited in, in memory or block by block from disk, does not matter)."""
    parts = {}
    for name, tensor in named_tensors:
        h = hashlib.sha256(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().contiguous().cpu().reshape(-1)
        # bytes through a same-width integer view: numpy has no bfloat16
        h.update(flat.view(_int_of_width(flat.element_size())).numpy().data)
        parts[name] = h.hexdigest()
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _int_of_width(nbytes: int):
    import torch

    return {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[nbytes]


def tokens_digest(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.detach().cpu().to(dtype=_int_of_width(8)).numpy().data).hexdigest()


# provenance, not architecture: a model evaluated in memory after pruning and the same model
# reloaded from --save_model differ in these and nothing else
_CONFIG_PROVENANCE = ("_name_or_path", "transformers_version", "dtype", "torch_dtype",
                      "quantization_config", "_commit_hash", "use_cache", "architectures")


def config_digest(config) -> str:
    """SHA-256 of a transformers config's fields that change what the forward computes."""
    fields = {k: v for k, v in config.to_dict().items() if k not in _CONFIG_PROVENANCE}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def compute_key(device) -> dict:
    """What computes the windows: a value from another device, thread count or library
    version may differ in its last bits."""
    import torch
    import transformers

    key = {"device": device.type, "torch": torch.__version__,
           "transformers": transformers.__version__}
    if device.type == "cuda":
        key["device_name"] = torch.cuda.get_device_name(device)
    else:
        key["threads"] = torch.get_num_threads()
    return key


class WindowLog:
    """The finished windows' values of one evaluation, written to disk after every window."""

    def __init__(self, folder: str | Path, key: dict):
        self.key = key
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.path = Path(folder) / f"{PREFIX}{name}.json"
        self.values: list[float] = self._stored()

    def _stored(self) -> list[float]:
        if not self.path.exists():
            return []
        try:
            stored = json.loads(self.path.read_text())
            if stored["key"] != self.key:  # a 16-hex-digit name clash: not this evaluation
                return []
            return [float(v) for v in stored["values"]]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable evaluation progress %s (%s): starting over",
                        self.path, exc)
            return []

    def append(self, value: float) -> None:
        self.values.append(value)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"key": self.key, "values": self.values}))
