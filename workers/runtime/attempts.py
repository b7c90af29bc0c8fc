"""Crash counts: how often a suspect delivery's handler started, in `fleet_attempts`.

A redelivered message may be the one that killed the last process. The
consumer counts each start of its handler here, committed on its own before
the handler runs, so the count survives the process dying in the handler;
past the worker's `crash_limit` the message is parked as `crash-loop`
(`workers/runtime/retry.py` decides). Counted per message, not per
redelivery: messages merely prefetched beside a poison one are never counted
(DESIGN: "count attempts per message").

This module owns the table: its DDL, the count and its pruning. It imports
nothing else of fleet's.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_attempts (
    worker     text        NOT NULL,
    message_id text        NOT NULL,
    started    integer     NOT NULL,
    last_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, message_id)
);
"""
#: True once SCHEMA has run.
READY = "to_regclass('fleet_attempts') IS NOT NULL"

_STARTED = """
INSERT INTO fleet_attempts (worker, message_id, started) VALUES ($1, $2, 1)
ON CONFLICT (worker, message_id)
DO UPDATE SET started = fleet_attempts.started + 1, last_at = now()
RETURNING started
"""
_PRUNE = """
DELETE FROM fleet_attempts WHERE worker = $1 AND last_at < now() - $2::interval
"""


class PostgresAttempts:
    """Per (worker, message_id), the starts of its handler, through a connection pool.

    Args:
        pool: an asyncpg pool on a database where SCHEMA has run.
        worker: the worker whose counts `prune` deletes.
        retention: how long after its last start a count is kept.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, worker: str, retention: timedelta = timedelta(days=7)
    ):
        self._pool = pool
        self.worker = worker
        self.retention = retention

    def started(self, worker: str, message_id: str) -> Coroutine[Any, Any, int]:
        """Count one more start; the count, this one included (1 the first time).

        Committed on its own, at once: it must outlive the process dying in the
        handler that follows.
        """
        # The pool's coroutine itself: no frame of this method's own to await.
        count: Coroutine[Any, Any, int] = self._pool.fetchval(_STARTED, worker, message_id)
        return count

    async def prune(self) -> int:
        """Delete this worker's counts not started within the retention; returns how many."""
        status = await self._pool.execute(_PRUNE, self.worker, self.retention)
        return int(status.rsplit(" ", 1)[-1])
