"""Rates as the topology file writes them: ``50/s``, ``600/m``, ``3600/h``, ``2.5/s``."""

from __future__ import annotations

import re

_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*/\s*(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


class Rate:
    """Events per unit of time, kept as it is written and as events per second."""

    __slots__ = ("count", "unit")

    def __init__(self, count: float, unit: str = "s"):
        if unit not in _UNIT_SECONDS:
            raise ValueError(f"invalid rate unit {unit!r}: write s, m or h")
        if not count > 0:
            raise ValueError(f"invalid rate {count:g}/{unit}: a rate must be above zero")
        self.count = count
        self.unit = unit

    @classmethod
    def parse(cls, text: object) -> Rate:
        """``"50/s"`` → Rate(50, "s").

        Raises:
            ValueError: not a positive number, a slash and s, m or h.
        """
        if isinstance(text, Rate):
            return text
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"invalid rate {text!r}: write a number of calls per unit, "
                "like 50/s, 600/m or 3600/h"
            )
        count = float(match[1])
        if count <= 0:
            raise ValueError(f"invalid rate {text!r}: a rate must be above zero")
        return cls(count, match[2])

    @property
    def per_second(self) -> float:
        return self.count / _UNIT_SECONDS[self.unit]

    def __str__(self) -> str:
        return f"{self.count:g}/{self.unit}"

    def __repr__(self) -> str:
        return f"Rate({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rate) and other.per_second == self.per_second

    def __hash__(self) -> int:
        return hash(self.per_second)
