"""The saga timeline: one row in `fleet_events` per event a worker handled.

Each row says what happened to one event in one worker (processed, retried,
dead-lettered) and what it emitted; `fleet saga show` reads them back
(`workers/saga.py`). A processed event's row is written by its claim, in the
claim's own statement and transaction (`claims`, `group_commit` build theirs
from `insert`, `set_emitted` and `delete` below), so it exists only if the
claim committed. A retry or a dead letter is noted on its own (`note`).

This module owns the table: its DDL, its columns and its pruning. It imports
nothing else of fleet's, so any store may build on it.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_events (
    id             bigserial   PRIMARY KEY,
    correlation_id text        NOT NULL,
    message_id     text        NOT NULL,
    causation_id   text,
    type           text        NOT NULL,
    worker         text        NOT NULL,
    outcome        text        NOT NULL,
    emitted        text[]      NOT NULL DEFAULT '{}',
    detail         text,
    at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS fleet_events_saga ON fleet_events (correlation_id, at);
CREATE INDEX IF NOT EXISTS fleet_events_age ON fleet_events (at);
"""
#: True once SCHEMA has run (the age index came later: older databases lack it).
READY = "to_regclass('fleet_events') IS NOT NULL AND to_regclass('fleet_events_age') IS NOT NULL"


class EventNote(NamedTuple):
    """One line of a saga's timeline: what happened to one event in one worker."""

    correlation_id: str
    message_id: str
    causation_id: str | None
    type: str
    worker: str
    outcome: str  # processed | retried | dead-lettered
    emitted: list[str]
    detail: str | None = None


def insert(*columns: str) -> str:
    """The INSERT of timeline rows into `columns` (default: every field of
    `EventNote`, in order), their values (VALUES or a SELECT) to follow; the
    other columns take their defaults. To run in a claim's statement.

    Raises:
        ValueError: a column that is not a field of EventNote.
    """
    unknown = [c for c in columns if c not in EventNote._fields]
    if unknown:
        raise ValueError(f"fleet_events has no column {unknown[0]!r}")
    return f"INSERT INTO fleet_events ({', '.join(columns or EventNote._fields)})"


def set_emitted(emitted: str, event_id: str) -> str:
    """The UPDATE naming a row's follow-on types, given its two parameters
    (``set_emitted("$4", "$5")``), to run in a claim's statement."""
    return f"UPDATE fleet_events SET emitted = {emitted} WHERE id = {event_id}"


def delete(event_ids: str) -> str:
    """The DELETE of the rows whose ids are the array parameter `event_ids`
    (a withdrawn claim's rows)."""
    return f"DELETE FROM fleet_events WHERE id = ANY({event_ids})"


_NOTE = insert() + " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
_PRUNE = "DELETE FROM fleet_events WHERE at < now() - $1::interval"


class PostgresTimeline:
    """The timeline's rows, written and pruned through a connection pool.

    Args:
        pool: an asyncpg pool on a database where SCHEMA has run.
        retention: how long a row is kept (every worker's: the table is shared).
    """

    def __init__(self, pool: asyncpg.Pool, *, retention: timedelta = timedelta(days=7)):
        self._pool = pool
        self.retention = retention

    def note(self, note: EventNote) -> Coroutine[Any, Any, str]:
        """Write a line outside any claim (a retry, a dead letter), committed at once."""
        # The pool's coroutine itself: no frame of this method's own to await.
        return self._pool.execute(_NOTE, *note)

    async def prune(self) -> int:
        """Delete every row older than the retention; returns how many."""
        status = await self._pool.execute(_PRUNE, self.retention)
        return int(status.rsplit(" ", 1)[-1])
