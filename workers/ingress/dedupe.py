"""Caller-given ids the ingress has seen recently, so a repeat is not published again.

Providers retry a webhook when they did not see our answer, and a captured
request can be replayed within its signature's tolerance. Both carry the same
id (Idempotency-Key, webhook-id, X-GitHub-Delivery, the Stripe event id), which
is also the message id, so workers would dedupe it anyway; remembering it here
keeps the repeat off the broker and tells the caller what happened.

`RecentIds` keeps them in this process's memory; `PostgresRecentIds` in a
table every ingress replica shares, so a repeat is caught whichever replica
it reaches, and across restarts. Either way the message id, deduplicated by
every worker's inbox, stays the last guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    import asyncpg

log = structlog.get_logger("fleet.ingress")


class Seen(enum.Enum):
    """What the ingress knows of an id when a request carrying it arrives."""

    NEW = "new"
    #: Accepted earlier with the same body: answer again, publish nothing.
    DUPLICATE = "duplicate"
    #: Accepted earlier with a different body: the id was reused by mistake.
    CONFLICT = "conflict"
    #: Another request with this id is being published right now.
    IN_PROGRESS = "in-progress"


class SeenIds(Protocol):
    """Where the ingress remembers caller-given ids."""

    async def begin(self, route: str, message_id: str, body: bytes, window: float) -> Seen:
        """Note that a request with `message_id` is about to be published.

        Returns NEW (go ahead; follow with `accepted` or `abandon`) or what
        the earlier request with this id says about this one.
        """
        ...

    async def accepted(self, route: str, message_id: str) -> None:
        """The broker confirmed the event: repeats are duplicates from now on."""

    async def abandon(self, route: str, message_id: str) -> None:
        """The publish failed: a retry with this id must be published."""


@dataclass
class _Entry:
    digest: bytes
    expires: float
    accepted: bool


class RecentIds:
    """A bounded, expiring record of ids per route: the oldest are forgotten first."""

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    async def begin(self, route: str, message_id: str, body: bytes, window: float) -> Seen:
        now = time.monotonic()
        key = (route, message_id)
        digest = hashlib.sha256(body).digest()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            if not entry.accepted:
                return Seen.IN_PROGRESS
            return Seen.DUPLICATE if entry.digest == digest else Seen.CONFLICT
        self._entries[key] = _Entry(digest, now + window, accepted=False)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return Seen.NEW

    async def accepted(self, route: str, message_id: str) -> None:
        entry = self._entries.get((route, message_id))
        if entry is not None:
            entry.accepted = True

    async def abandon(self, route: str, message_id: str) -> None:
        self._entries.pop((route, message_id), None)


SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_ingress_ids (
    route      text        NOT NULL,
    id         text        NOT NULL,
    digest     bytea       NOT NULL,
    accepted   boolean     NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (route, id)
);
CREATE INDEX IF NOT EXISTS fleet_ingress_ids_expiry ON fleet_ingress_ids (expires_at);
"""
# Take the id unless a live entry holds it, in one statement: a new id is
# inserted; an expired entry, or one whose publish was abandoned by a process
# that died (pending for longer than STALE_PENDING), is taken over. The outer
# SELECT reads the entry as it was before, to tell a repeat from a conflict.
_BEGIN = """
WITH taken AS (
    INSERT INTO fleet_ingress_ids (route, id, digest, expires_at)
    VALUES ($1, $2, $3, now() + make_interval(secs => $4))
    ON CONFLICT (route, id) DO UPDATE
        SET digest = EXCLUDED.digest, accepted = false, started_at = now(),
            expires_at = EXCLUDED.expires_at
        WHERE fleet_ingress_ids.expires_at < now()
           OR (NOT fleet_ingress_ids.accepted
               AND fleet_ingress_ids.started_at < now() - make_interval(secs => $5))
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM taken) AS taken, held.digest, held.accepted
FROM (SELECT 1) AS one
LEFT JOIN fleet_ingress_ids AS held ON held.route = $1 AND held.id = $2
"""
_ACCEPTED = "UPDATE fleet_ingress_ids SET accepted = true WHERE route = $1 AND id = $2"
_ABANDON = "DELETE FROM fleet_ingress_ids WHERE route = $1 AND id = $2 AND NOT accepted"
_PRUNE = "DELETE FROM fleet_ingress_ids WHERE expires_at < now()"

#: Seconds after which an unconfirmed entry counts as abandoned (its process died
#: between taking the id and the broker's confirm).
STALE_PENDING = 60.0


class PostgresRecentIds:
    """Caller-given ids in PostgreSQL (`fleet_ingress_ids`), shared by every replica.

    Args:
        dsn: a PostgreSQL URL.
        prune_every: seconds between deletions of expired entries.
    """

    def __init__(self, dsn: str, *, prune_every: float = 600.0):
        self.dsn = dsn
        self.prune_every = prune_every
        self._pool: asyncpg.Pool | None = None
        self._pruner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=10)
        async with self._pool.acquire() as conn, conn.transaction():
            # Replicas starting together must not race on CREATE TABLE.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_ingress_ids'))")
            await conn.execute(SCHEMA)
        self._pruner = asyncio.create_task(self._prune_periodically())

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresRecentIds.start() was not called")
        return self._pool

    async def begin(self, route: str, message_id: str, body: bytes, window: float) -> Seen:
        digest = hashlib.sha256(body).digest()
        row = await self.pool.fetchrow(
            _BEGIN, route, message_id, digest, float(window), STALE_PENDING
        )
        assert row is not None
        if row["taken"]:
            return Seen.NEW
        if row["accepted"] is None or not row["accepted"]:
            # Held by a publish in progress (or taken this very moment by another
            # replica, committed after this statement's snapshot).
            return Seen.IN_PROGRESS
        return Seen.DUPLICATE if bytes(row["digest"]) == digest else Seen.CONFLICT

    async def accepted(self, route: str, message_id: str) -> None:
        await self.pool.execute(_ACCEPTED, route, message_id)

    async def abandon(self, route: str, message_id: str) -> None:
        await self.pool.execute(_ABANDON, route, message_id)

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.prune_every)
            try:
                await self.pool.execute(_PRUNE)
            except Exception as exc:  # a failed prune must not stop the ingress
                log.warning("ingress.prune_failed", error=str(exc))
