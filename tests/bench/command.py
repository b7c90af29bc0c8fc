"""What a contender process runs when it is not `python -m tests.bench.child`.

Apart from `process` so that the contenders' own modules can build one without
importing psutil (it would count in their resident set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The checkout: every contender process runs here.
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Command:
    """A contender process's command line.

    Attributes:
        argv: what to execute.
        env: its whole environment (None: the bench's).
        handshake: it prints ``ready`` and waits for ``go``; False: it consumes as soon
            as it starts, and exits only when told to (SIGTERM) after its result.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    handshake: bool = True
