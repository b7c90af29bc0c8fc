"""Durations as the topology file writes them: ``250ms``, ``5s``, ``30s``, ``5m``, ``1h``."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import total_ordering

_PATTERN = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@total_ordering
class Duration:
    """A whole number of milliseconds that prints the way it is written."""

    __slots__ = ("ms",)

    def __init__(self, ms: int):
        if ms <= 0:
            raise ValueError("a duration must be positive")
        self.ms = ms

    @classmethod
    def parse(cls, text: object) -> Duration:
        """``"30s"`` → Duration(30000).

        Raises:
            ValueError: not a positive whole number followed by ms, s, m, h or d.
        """
        if isinstance(text, Duration):
            return text
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"invalid duration {text!r}: write a whole number and a unit, "
                "like 250ms, 5s, 30s, 5m, 1h or 1d"
            )
        return cls(int(match[1]) * _UNIT_MS[match[2]])

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def timedelta(self) -> timedelta:
        return timedelta(milliseconds=self.ms)

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            if self.ms % _UNIT_MS[unit] == 0:
                return f"{self.ms // _UNIT_MS[unit]}{unit}"
        return f"{self.ms}ms"

    def __repr__(self) -> str:
        return f"Duration({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.ms == self.ms

    def __lt__(self, other: Duration) -> bool:
        return self.ms < other.ms

    def __hash__(self) -> int:
        return hash(self.ms)
