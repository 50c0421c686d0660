"""Hyperparameters declared once, next to what reads them.

An `Option` carries its name, default, help and valid range. The CLI flag (`--name`), the sweep
entry key (`method:name=value`), the validation and the `method_options` of a results file are
all derived from it. Importing this module (and the declarations) needs no torch, so that
`--help` and `--skip_if_done` answer in well under a second.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from lib.run.errors import UserError


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    type: type = float
    valid: str = ""  # the valid range in words, e.g. "in (0, 1)"; empty: anything of `type`
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    def convert(self, text: str, where: str) -> Any:
        """A value from text (a sweep entry); one clear error when it is not of this type."""
        if self.type is str:
            value: Any = text.strip()
        else:
            try:
                value = self.type(text)
            except ValueError:
                raise UserError(f"{where}: {self.name}={text!r} is not a number") from None
        self.validate(value, where)
        return value

    def validate(self, value: Any, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{prefix}{self.flag} {value}: choose from {', '.join(self.choices)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{prefix}{self.flag} {value} must be finite")
        if self.check is not None and not self.check(value):
            raise UserError(f"{prefix}{self.flag} {value} must be {self.valid}")

    def describe(self, default_text: str | None = None) -> str:
        """Help text with the default and the valid range, as --help prints it."""
        default = default_text if default_text is not None else f"{self.default:g}" \
            if isinstance(self.default, float) else str(self.default)
        valid = f"; {self.valid}" if self.valid else ""
        return f"{self.help} (default {default}{valid})"


class Settings(dict):
    """Resolved option values of one run; score functions read them as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def unique(options) -> list[Option]:
    """Options in first-seen order, each once (method families share declarations)."""
    seen: dict[str, Option] = {}
    for option in options:
        if seen.setdefault(option.name, option) is not option:
            raise ValueError(f"two different declarations of option {option.name}")
    return list(seen.values())
