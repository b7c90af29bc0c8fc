"""A problem found in a topology file: where, what, and how bad."""

from __future__ import annotations

from typing import Literal

import msgspec

Severity = Literal["error", "warning"]


class Problem(msgspec.Struct, frozen=True):
    """One finding, addressed by its path in the file (``queues.inventory.bind[1].exchange``)."""

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{prefix}{self.path}: {self.message}" if self.path else f"{prefix}{self.message}"


def errors(problems: list[Problem]) -> list[Problem]:
    """Only the problems that make a topology unusable."""
    return [p for p in problems if p.severity == "error"]
