"""`EnvReader`: typed values from an environment mapping, every problem collected."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
N = TypeVar("N", int, float)


class SettingsError(ValueError):
    """One or more settings are wrong; `problems` holds one line each, naming the setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_flag(text: str) -> bool | None:
    """True or False for the words every part of the kit accepts; None for anything else."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


class EnvReader:
    """Reads settings from `env`, noting each problem instead of stopping at the first.

    Each getter returns a usable value even when the raw one is wrong (the default), so one pass
    finds every problem; `check()` then raises them all at once.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def problem(self, line: str) -> None:
        self.problems.append(line)

    def text(self, name: str, default: str = "") -> str:
        """The stripped value; `default` when unset or blank."""
        return self.env.get(name, "").strip() or default

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.text(name)
        if not raw:
            return default
        value = parse_flag(raw)
        if value is None:
            self.problem(f"{name}={raw!r} must be one of 1/0, true/false, yes/no, on/off")
            return default
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.text(name, default).lower()
        if raw not in choices:
            self.problem(f"{name}={raw!r} must be one of {', '.join(choices)}")
            return default
        return raw

    def number(self, name: str, default: N, low: float, high: float) -> N:
        """An int or a float (the type of `default`) within [low, high]."""
        raw = self.text(name)
        if not raw:
            return default
        kind = type(default)
        try:
            value = kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            self.problem(f"{name}={raw!r} is not {noun}")
            return default
        if not low <= value <= high:  # also refuses nan
            self.problem(f"{name}={raw} is out of range ({low:g}..{high:g})")
            return default
        return value

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, blanks dropped."""
        return tuple(part.strip() for part in self.text(name).split(",") if part.strip())

    def check(self) -> None:
        """Raise every problem noted so far, if any."""
        if self.problems:
            raise SettingsError(list(self.problems))
