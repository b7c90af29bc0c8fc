"""Saga timelines: what happened to every event of a business transaction.

The runtime writes one `fleet_events` row per handled event and worker
(processed, retried or dead-lettered, with what it emitted). A saga is all
rows with one correlation id; causation ids link each event to the one that
caused it, so the rows form a tree:

    OrderPlaced  o-42-placed
    ├─ +0ms      inventory  processed → StockReserved
    │  └─ StockReserved  4f1c…
    │     ├─ +9ms     payments  retried (Unavailable: payment gateway answered 503)
    │     └─ +131ms   payments  processed → PaymentCaptured
    └─ +1ms      orders     processed → OrderDeadline

Reading only: `timeline` and `render` for `fleet saga show`, `sagas` for
`fleet saga list`. The orders table (the reference fleet's) adds each saga's
status when it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

#: Events that end a saga of the reference fleet.
TERMINAL = ("OrderConfirmed", "OrderCancelled")


@dataclass(frozen=True)
class Step:
    """One row of the timeline: one event handled (or failed) by one worker."""

    message_id: str
    causation_id: str | None
    type: str
    worker: str
    outcome: str  # processed | retried | dead-lettered
    emitted: list[str]
    detail: str | None
    at: datetime


@dataclass
class Order:
    """The reference fleet's view of the saga, when it has one."""

    order_id: str
    status: str
    reason: str | None


@dataclass
class SagaSummary:
    """One line of `fleet saga list`."""

    correlation_id: str
    started: datetime
    last: datetime
    events: int
    retried: int
    dead_lettered: int
    ended: datetime | None  # when the terminal event was emitted
    order_id: str | None = None
    status: str | None = None
    reason: str | None = None

    @property
    def duration_ms(self) -> float:
        """First event to terminal event; to the latest event while still running."""
        end = self.ended or self.last
        return (end - self.started).total_seconds() * 1000


class NoTimeline(Exception):
    """The database has no saga timeline (no worker ran with it)."""


async def resolve(db: Any, saga_id: str) -> str | None:
    """The correlation id for `saga_id`: itself if the timeline has it, else the saga of
    the order with that id (orders table), else None."""
    try:
        if await db.fetchval(
            "SELECT 1 FROM fleet_events WHERE correlation_id = $1 LIMIT 1", saga_id
        ):
            return saga_id
    except asyncpg.UndefinedTableError:
        raise NoTimeline() from None
    try:
        found: str | None = await db.fetchval(
            "SELECT correlation_id FROM orders WHERE order_id = $1", saga_id
        )
    except asyncpg.UndefinedTableError:
        return None
    return found


async def timeline(db: Any, correlation_id: str) -> list[Step]:
    """Every row of the saga, oldest first."""
    rows = await db.fetch(
        "SELECT message_id, causation_id, type, worker, outcome, emitted, detail, at "
        "FROM fleet_events WHERE correlation_id = $1 ORDER BY at, id",
        correlation_id,
    )
    return [Step(**dict(row)) for row in rows]


async def order_of(db: Any, correlation_id: str) -> Order | None:
    try:
        row = await db.fetchrow(
            "SELECT order_id, status, reason FROM orders WHERE correlation_id = $1 LIMIT 1",
            correlation_id,
        )
    except asyncpg.UndefinedTableError:
        return None
    return Order(**dict(row)) if row is not None else None


_SAGAS = """
WITH recent AS (
    SELECT DISTINCT correlation_id FROM fleet_events WHERE at >= now() - $1::interval
), sagas AS (
    SELECT e.correlation_id,
           min(e.at) AS started,
           max(e.at) AS last,
           count(*) AS events,
           count(*) FILTER (WHERE e.outcome = 'retried') AS retried,
           count(*) FILTER (WHERE e.outcome = 'dead-lettered') AS dead_lettered,
           min(e.at) FILTER (WHERE e.outcome = 'processed' AND e.emitted && $2::text[]) AS ended
    FROM fleet_events e JOIN recent USING (correlation_id)
    GROUP BY e.correlation_id
)
"""


async def sagas(
    db: Any, *, since: timedelta, status: str | None = None, limit: int = 50
) -> list[SagaSummary]:
    """The sagas with events in the last `since`, newest first.

    Raises:
        NoTimeline: there is no fleet_events table.
        LookupError: `status` was asked for and there is no orders table.
    """
    with_orders = (
        _SAGAS
        + """
        SELECT s.*, o.order_id, o.status, o.reason
        FROM sagas s LEFT JOIN orders o ON o.correlation_id = s.correlation_id
        WHERE $3::text IS NULL OR o.status = $3
        ORDER BY s.started DESC LIMIT $4
        """
    )
    try:
        rows = await db.fetch(with_orders, since, list(TERMINAL), status, limit)
    except asyncpg.UndefinedTableError as error:
        if "fleet_events" in str(error):
            raise NoTimeline() from None
        if status is not None:
            raise LookupError("--status needs the reference fleet's orders table") from None
        rows = await db.fetch(
            _SAGAS + "SELECT s.* FROM sagas s ORDER BY s.started DESC LIMIT $3",
            since,
            list(TERMINAL),
            limit,
        )
    return [SagaSummary(**dict(row)) for row in rows]


# -- the causation tree -----------------------------------------------------------


@dataclass
class _Message:
    message_id: str
    type: str
    causation_id: str | None
    steps: list[Step] = field(default_factory=list)
    # child messages attached to one of this message's steps (by index), or to the
    # message itself (None) when no step says it emitted them
    children: dict[int | None, list[_Message]] = field(default_factory=dict)


def render(steps: Sequence[Step]) -> list[tuple[str, str | None]]:
    """The timeline as a causation tree: (line, outcome of the step on it or None).

    Each event appears once with the workers that handled it under it (+ms from
    the saga's first row); the events a step emitted hang under that step.
    """
    if not steps:
        return []
    start = min(s.at for s in steps)
    messages: dict[str, _Message] = {}
    for step in steps:
        message = messages.setdefault(
            step.message_id, _Message(step.message_id, step.type, step.causation_id)
        )
        message.steps.append(step)
    roots = []
    for message in messages.values():
        parent = messages.get(message.causation_id or "")
        if parent is None or parent is message:
            roots.append(message)
            continue
        slot = next(
            (
                i
                for i, s in enumerate(parent.steps)
                if s.outcome == "processed" and message.type in s.emitted
            ),
            None,
        )
        parent.children.setdefault(slot, []).append(message)
    lines: list[tuple[str, str | None]] = []
    for root in roots:
        lines.append((_message_line(root), None))
        _render_message(root, "", start, lines)
    return lines


def _render_message(
    message: _Message, prefix: str, start: datetime, lines: list[tuple[str, str | None]]
) -> None:
    items: list[tuple[Step | None, list[_Message]]] = [
        (step, message.children.get(i, [])) for i, step in enumerate(message.steps)
    ]
    items += [(None, [child]) for child in message.children.get(None, [])]
    for n, (step, children) in enumerate(items):
        last = n == len(items) - 1
        branch, below = ("└─ ", "   ") if last else ("├─ ", "│  ")
        if step is None:
            lines.append((prefix + branch + _message_line(children[0]), None))
            _render_message(children[0], prefix + below, start, lines)
            continue
        lines.append((prefix + branch + _step_line(step, start), step.outcome))
        for m, child in enumerate(children):
            child_last = m == len(children) - 1
            child_branch, child_below = ("└─ ", "   ") if child_last else ("├─ ", "│  ")
            lines.append((prefix + below + child_branch + _message_line(child), None))
            _render_message(child, prefix + below + child_below, start, lines)


def _message_line(message: _Message) -> str:
    return f"{message.type}  {_short(message.message_id)}"


def _step_line(step: Step, start: datetime) -> str:
    ms = round((step.at - start).total_seconds() * 1000)
    text = f"+{ms}ms  {step.worker}  {step.outcome}"
    if step.emitted:
        text += " → " + ", ".join(step.emitted)
    if step.detail:
        text += f" ({step.detail})"
    return text


def _short(message_id: str) -> str:
    """Derived ids are 32 hex digits: the first 12 are plenty to tell them apart."""
    if len(message_id) == 32 and all(c in "0123456789abcdef" for c in message_id):
        return message_id[:12] + "…"
    return message_id
