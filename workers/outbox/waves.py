"""The order in which the relay publishes a batch: waves, one row per key each.

Every row of one wave has a different key, so a wave is published pipelined,
each publish awaiting only its own confirm. The next wave waits for the
previous one's confirms: a key's next row goes out only after its previous row
was confirmed. If the broker nacks a row or the connection drops before its
confirm, the key's later rows are held back, so the copy sent again can never
arrive after a row that followed it. Returned (unroutable) rows are parked
and do not hold their key back: they are out of the stream for good.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar


class Keyed(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def key(self) -> str: ...


R = TypeVar("R", bound=Keyed)


def waves(rows: Sequence[R]) -> list[list[R]]:
    """`rows` (in id order) as waves: the n-th wave holds each key's n-th row."""
    queues: dict[str, list[R]] = {}
    for row in rows:
        queues.setdefault(row.key, []).append(row)
    out: list[list[R]] = []
    for depth in range(max((len(q) for q in queues.values()), default=0)):
        wave = [q[depth] for q in queues.values() if len(q) > depth]
        out.append(sorted(wave, key=lambda row: row.id))
    return out


def unblocked(wave: Sequence[R], held: set[str]) -> Iterator[R]:
    """The rows of `wave` whose key no earlier failure holds back."""
    return (row for row in wave if row.key not in held)
