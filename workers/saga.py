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
`fleet saga list`. Which events start and end a saga, and the status each end
gives it, come from the topology's `sagas:` section, so this works for any
choreography; without it, sagas have no status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from topology.model import SagaSpec

#: A saga's status before an ending event was emitted.
PENDING = "pending"


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
class SagaSummary:
    """One line of `fleet saga list`."""

    correlation_id: str
    started: datetime
    last: datetime
    events: int
    retried: int
    dead_lettered: int
    #: The type of the saga's first recorded event.
    first: str
    #: When, and with which event, it ended; None while it runs.
    ended: datetime | None
    ending: str | None
    #: The topology's name of the saga (`sagas:`) and the status its end gave it.
    saga: str | None = None
    status: str | None = None

    @property
    def duration_ms(self) -> float:
        """First event to ending event; to the latest event while still running."""
        end = self.ended or self.last
        return (end - self.started).total_seconds() * 1000


class NoTimeline(Exception):
    """The database has no saga timeline (no worker ran with it)."""


async def resolve(db: Any, saga_id: str) -> str | None:
    """The correlation id for `saga_id`: itself if the timeline has it, else the saga of
    the message with that id, else None."""
    try:
        if await db.fetchval(
            "SELECT 1 FROM fleet_events WHERE correlation_id = $1 LIMIT 1", saga_id
        ):
            return saga_id
        found: str | None = await db.fetchval(
            "SELECT correlation_id FROM fleet_events WHERE message_id = $1 LIMIT 1", saga_id
        )
    except asyncpg.UndefinedTableError:
        raise NoTimeline() from None
    return found


async def timeline(db: Any, correlation_id: str) -> list[Step]:
    """Every row of the saga, oldest first."""
    rows = await db.fetch(
        "SELECT message_id, causation_id, type, worker, outcome, emitted, detail, at "
        "FROM fleet_events WHERE correlation_id = $1 ORDER BY at, id",
        correlation_id,
    )
    return [Step(**dict(row)) for row in rows]


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
           (array_agg(e.type ORDER BY e.at, e.id))[1] AS first
    FROM fleet_events e JOIN recent USING (correlation_id)
    GROUP BY e.correlation_id
), endings AS (
    SELECT DISTINCT ON (e.correlation_id) e.correlation_id, x.type AS ending, e.at AS ended
    FROM fleet_events e JOIN recent USING (correlation_id), unnest(e.emitted) AS x(type)
    WHERE e.outcome = 'processed' AND x.type = ANY($2::text[])
    ORDER BY e.correlation_id, e.at, e.id
)
SELECT s.*, n.ending, n.ended
FROM sagas s LEFT JOIN endings n USING (correlation_id)
WHERE $3::text[] IS NULL OR n.ending = ANY($3::text[]) OR ($4 AND n.ending IS NULL)
ORDER BY s.started DESC LIMIT $5
"""


async def sagas(
    db: Any,
    *,
    declared: Mapping[str, SagaSpec],
    since: timedelta,
    status: str | None = None,
    limit: int = 50,
) -> list[SagaSummary]:
    """The sagas with events in the last `since`, newest first, with the status their
    ending event gives them by the topology's `declared` sagas.

    Raises:
        NoTimeline: there is no fleet_events table.
        LookupError: `status` is none that `declared` names (nor `pending`).
    """
    endings = {event: (name, st) for name, spec in declared.items() for event, st in
               spec.ending().items()}  # fmt: skip
    wanted: list[str] | None = None
    if status is not None:
        known = {st for _, st in endings.values()}
        if status != PENDING and status not in known:
            choices = ", ".join(sorted(known | {PENDING})) if endings else "none: add `sagas:`"
            raise LookupError(f"no saga ends with status {status!r} (the topology's: {choices})")
        wanted = [event for event, (_, st) in endings.items() if st == status]
    try:
        rows = await db.fetch(_SAGAS, since, list(endings), wanted, status == PENDING, limit)
    except asyncpg.UndefinedTableError:
        raise NoTimeline() from None
    summaries = [SagaSummary(**dict(row)) for row in rows]
    starts = {spec.starts: name for name, spec in declared.items()}
    for summary in summaries:
        if summary.ending is not None:
            summary.saga, summary.status = endings[summary.ending]
        else:
            summary.saga = starts.get(summary.first)
            summary.status = PENDING if summary.saga is not None else None
    return summaries


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
