"""Byte sizes as the topology file writes them: ``500MB``, ``10GB``, ``1GiB``, or a number."""

from __future__ import annotations

import re
from functools import total_ordering

_PATTERN = re.compile(r"^(\d+)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$")
# Decimal units as RabbitMQ's own docs use them (10GB = 10^10 bytes); binary ones spelled out.
_UNIT = {
    None: 1,
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


@total_ordering
class ByteSize:
    """A positive whole number of bytes that prints the way it is written."""

    __slots__ = ("_text", "bytes")

    def __init__(self, count: int, text: str | None = None):
        if count <= 0:
            raise ValueError("a size must be positive")
        self.bytes = count
        self._text = text or str(count)

    @classmethod
    def parse(cls, value: object) -> ByteSize:
        """``"10GB"`` → ByteSize(10_000_000_000); a plain int is a number of bytes.

        Raises:
            ValueError: not a positive whole number with an optional unit.
        """
        if isinstance(value, ByteSize):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        match = _PATTERN.match(value.strip()) if isinstance(value, str) else None
        if match is None or not isinstance(value, str):
            raise ValueError(
                f"invalid size {value!r}: write a whole number of bytes, or one with a unit, "
                "like 100MB, 10GB or 1GiB"
            )
        return cls(int(match[1]) * _UNIT[match[2]], value.strip())

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"ByteSize({self._text})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteSize) and other.bytes == self.bytes

    def __lt__(self, other: ByteSize) -> bool:
        return self.bytes < other.bytes

    def __hash__(self) -> int:
        return hash(self.bytes)
