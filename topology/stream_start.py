"""Where a stream worker starts reading when it has no stored offset: the `from`
setting, parsed once into a value the runtime maps onto the stream protocol."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from topology.duration import Duration

StartKind = Literal["first", "last", "next", "offset", "timestamp"]
_NAMED: tuple[StartKind, ...] = ("first", "last", "next")


class StreamStart:
    """`first`, `last` (the last chunk), `next`, an `offset`, or a `timestamp` (ms since
    the epoch; a relative `2h` is resolved against the clock when the worker starts)."""

    __slots__ = ("back_ms", "kind", "text", "value")

    def __init__(
        self,
        kind: StartKind,
        value: int | None = None,
        *,
        back_ms: int | None = None,
        text: str | None = None,
    ):
        self.kind = kind
        self.value = value
        #: For a relative start: how far back from now, in ms.
        self.back_ms = back_ms
        #: As the file wrote it.
        self.text = text if text is not None else (kind if value is None else str(value))

    @classmethod
    def parse(cls, text: object) -> StreamStart:
        """See `parse_stream_start`."""
        return text if isinstance(text, StreamStart) else parse_stream_start(text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StreamStart) and (
            other.kind,
            other.value,
            other.back_ms,
        ) == (self.kind, self.value, self.back_ms)

    def __hash__(self) -> int:
        return hash((self.kind, self.value, self.back_ms))

    def __repr__(self) -> str:
        return f"StreamStart({self.text!r})"

    def __str__(self) -> str:
        return self.text

    def resolved(self, now_ms: int | None = None) -> StreamStart:
        """A relative start as the timestamp it means now; any other as it is."""
        if self.back_ms is None:
            return self
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return StreamStart("timestamp", now - self.back_ms, text=self.text)


def parse_stream_start(text: object) -> StreamStart:
    """``first`` | ``last`` | ``next`` | ``1234`` | ``2h`` (back from now) | an ISO time
    (``2026-12-01T08:00:00Z``; without a zone it is UTC).

    Raises:
        ValueError: none of these, with what to write.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return StreamStart("offset", text)
    if isinstance(text, datetime):  # YAML reads an unquoted ISO time as one
        moment = text if text.tzinfo is not None else text.replace(tzinfo=UTC)
        return StreamStart("timestamp", int(moment.timestamp() * 1000), text=moment.isoformat())
    if isinstance(text, str):
        word = text.strip()
        if word in _NAMED:
            return StreamStart(word)
        if word.isdigit():
            return StreamStart("offset", int(word))
        try:
            return StreamStart("timestamp", back_ms=Duration.parse(word).ms, text=word)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(word.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return StreamStart("timestamp", int(moment.timestamp() * 1000), text=word)
    raise ValueError(
        f"invalid start {text!r}: write first, last, next, an offset (1234), how far "
        "back (30m, 2h, 1d) or an ISO time (2026-12-01T08:00:00Z)"
    )
