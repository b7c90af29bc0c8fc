"""Dead-lettered messages as the failures page sees them: grouped and filtered.

Each message is read into `workers.dlq.ParkedMessage`, the record `fleet dlq
show` prints, so the console and the CLI give the same reason for the same
message. Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiormq.abc import DeliveredMessage

from topology.management import PeekedMessage
from workers.dlq import ParkedMessage
from workers.runtime import headers as h


@dataclass(frozen=True)
class FailedMessage:
    """One parked message: where it is, what `fleet dlq show` says of it, and its raw parts."""

    queue: str
    position: int  # 0 is the head of the queue
    key: str  # stable across reads: picks the message for an action
    parked: ParkedMessage
    properties: dict[str, Any]
    headers: dict[str, Any]
    failed_at: datetime | None

    @property
    def group(self) -> tuple[str, str, str]:
        """Messages that failed the same way: queue, reason, exception type."""
        return (self.queue, self.parked.reason, self.parked.error_type or "-")

    @property
    def body_text(self) -> str:
        return self.parked.body.decode("utf-8", "replace")


def read(queue: str, position: int, message: DeliveredMessage) -> FailedMessage:
    """A delivery read while browsing (see `browse`), as the failures page shows it."""
    props = message.header.properties
    properties = {
        "message_id": props.message_id,
        "correlation_id": props.correlation_id,
        "type": props.message_type,
        "content_type": props.content_type,
        "delivery_mode": props.delivery_mode,
        "timestamp": props.timestamp.isoformat() if props.timestamp else None,
        "app_id": props.app_id,
    }
    headers: dict[str, Any] = dict(props.headers or {})
    parked = ParkedMessage.from_peek(
        PeekedMessage(payload=message.body, properties={**properties, "headers": headers})
    )
    return FailedMessage(
        queue=queue,
        position=position,
        key=message_key(props.message_id, message.body, headers),
        parked=parked,
        properties={k: v for k, v in properties.items() if v is not None},
        headers=headers,
        failed_at=_when(headers.get(h.LAST_FAILURE)) or props.timestamp,
    )


def message_key(message_id: str | None, body: bytes, headers: dict[str, Any]) -> str:
    """A short digest of what tells one parked message from another: its id, body and
    failure time (a message id alone may repeat: the same event parked twice)."""
    digest = hashlib.sha256()
    for part in (message_id or "", str(headers.get(h.LAST_FAILURE, ""))):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()[:16]


def group_id(group: tuple[str, str, str]) -> str:
    """A URL-safe name for a group."""
    return hashlib.sha256("\0".join(group).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Filters:
    """What the operator narrowed the failures down to; empty fields match everything."""

    reason: str = ""
    error_type: str = ""
    text: str = ""  # a substring of the body or of any header or property
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, message: FailedMessage) -> bool:
        p = message.parked
        if self.reason and self.reason not in p.reason:
            return False
        if self.error_type and self.error_type != (p.error_type or "-"):
            return False
        if (self.since or self.until) and message.failed_at is None:
            return False
        if self.since and message.failed_at and message.failed_at < self.since:
            return False
        if self.until and message.failed_at and message.failed_at > self.until:
            return False
        if self.text:
            needle = self.text.lower()
            haystack = [message.body_text, *map(str, message.headers.values()),
                        *map(str, message.properties.values())]  # fmt: skip
            if not any(needle in part.lower() for part in haystack):
                return False
        return True


@dataclass
class Group:
    """Messages of one queue that failed for the same reason with the same exception."""

    queue: str
    reason: str
    error_type: str
    messages: list[FailedMessage] = field(default_factory=list)

    @property
    def id(self) -> str:
        return group_id((self.queue, self.reason, self.error_type))

    @property
    def first(self) -> datetime | None:
        times = [m.failed_at for m in self.messages if m.failed_at]
        return min(times) if times else None

    @property
    def last(self) -> datetime | None:
        times = [m.failed_at for m in self.messages if m.failed_at]
        return max(times) if times else None

    @property
    def example_error(self) -> str | None:
        return next((m.parked.error for m in self.messages if m.parked.error), None)


def grouped(messages: Iterable[FailedMessage], filters: Filters) -> list[Group]:
    """The messages that match, grouped, the biggest group first."""
    groups: dict[tuple[str, str, str], Group] = {}
    for message in messages:
        if not filters.matches(message):
            continue
        queue, reason, error_type = message.group
        groups.setdefault(message.group, Group(queue, reason, error_type)).messages.append(message)
    return sorted(groups.values(), key=lambda g: (-len(g.messages), g.queue, g.reason))


def choose(messages: Sequence[FailedMessage], keys: Iterable[str]) -> list[FailedMessage]:
    """The messages with these keys, in queue order."""
    wanted = set(keys)
    return [m for m in messages if m.key in wanted]


def _when(value: object) -> datetime | None:
    """A failure header's ISO time (fleet writes UTC) as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
