"""Sweep entries: a method, optionally with its options, e.g.
`wanda_select:idf_power=0.25,spiky_power=0.5`. Each entry becomes its own row and directory.
The keys an entry takes are the options its method declares (lib/pruning/methods.py) and the layer-wise
sparsity options (lib/pruning/layer_sparsity.py), e.g. `wanda:layer_sparsity=owl`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib.pruning import layer_sparsity
from lib.pruning.methods import DENSE, METHODS, method_named
from lib.run.errors import UserError


@dataclass(frozen=True)
class Entry:
    method: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        if not self.options:
            return self.method
        return self.method + ":" + ",".join(f"{k}={_text(v)}" for k, v in self.options)

    @property
    def dirname(self) -> str:
        return self.method + "".join(f"__{k}={_text(v)}" for k, v in self.options)

    def flags(self) -> list[str]:
        out = ["--prune_method", self.method]
        for key, value in self.options:
            out += [f"--{key}", _text(value)]
        return out


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_entry(text: str) -> Entry:
    """`method` or `method:key=value,key=value`; one clear error for anything else."""
    method, _, rest = text.strip().partition(":")
    if method not in METHODS and method != DENSE.name:
        raise UserError(f"sweep entry {text!r}: unknown method {method!r}; choose from "
                        f"{', '.join(METHODS)}")
    chosen = method_named(method)
    declared = {o.name: o for o in (*chosen.options, *layer_sparsity.OPTIONS)} \
        if chosen.prunes else {}
    options: dict[str, Any] = {}
    if rest or text.strip().endswith(":"):
        if not declared:
            raise UserError(f"sweep entry {text!r}: {method} takes no options")
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in declared:
                raise UserError(f"sweep entry {text!r}: {part!r} is not key=value with a key "
                                f"among {', '.join(declared)} (the options {method} reads)")
            if key in options:
                raise UserError(f"sweep entry {text!r}: {key} given twice")
            options[key] = declared[key].convert(value, f"sweep entry {text!r}")
    return Entry(method, tuple(sorted(options.items())))


def split_entries(text: str) -> list[str]:
    """Entries are separated by spaces or by commas that are not inside an option list."""
    parts: list[str] = []
    for token in text.split():
        for piece in token.split(","):
            if parts and "=" in piece and ":" not in piece and ":" in parts[-1]:
                parts[-1] += "," + piece  # continues the previous entry's options
            elif piece:
                parts.append(piece)
    return parts


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers such as 0,1,2") \
            from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give distinct integers such as 0,1,2")
    return seeds
