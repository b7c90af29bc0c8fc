"""Request ids the ingress has seen recently, so a repeat is not published again.

Providers retry a webhook when they did not see our answer, and a captured
request can be replayed. Both carry the same id (the caller's Idempotency-Key
on a route without a signature; on a signed route, an id taken from what the
signature covers: see `workers.ingress.identity`), which is also the message
id, so workers would dedupe it anyway; remembering it here keeps the repeat
off the broker and tells the caller what happened.

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

    from workers.database import Database

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
    """Where the ingress remembers the ids of repeatable requests."""

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


_NONE: OrderedDict[str, _Entry] = OrderedDict()  # a route with no ids yet (never filled)


class RecentIds:
    """A bounded, expiring record of ids in memory: past `max_entries` ids of one
    route, that route's oldest are forgotten first. Each route has its own bound,
    so requests to one route (say, an unauthenticated one) cannot push another
    route's ids out of memory."""

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._routes: dict[str, OrderedDict[str, _Entry]] = {}

    async def begin(self, route: str, message_id: str, body: bytes, window: float) -> Seen:
        now = time.monotonic()
        digest = hashlib.sha256(body).digest()
        entries = self._routes.setdefault(route, OrderedDict())
        entry = entries.get(message_id)
        if entry is not None and entry.expires > now:
            if not entry.accepted:
                return Seen.IN_PROGRESS
            return Seen.DUPLICATE if entry.digest == digest else Seen.CONFLICT
        entries[message_id] = _Entry(digest, now + window, accepted=False)
        entries.move_to_end(message_id)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
        return Seen.NEW

    async def accepted(self, route: str, message_id: str) -> None:
        entry = self._routes.get(route, _NONE).get(message_id)
        if entry is not None:
            entry.accepted = True

    async def abandon(self, route: str, message_id: str) -> None:
        self._routes.get(route, _NONE).pop(message_id, None)


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
# `accepted` is false while the publish is in progress, or true when the entry
# is written in the transaction that accepts the request (`take_accepted`).
def _begin(accepted: bool) -> str:
    return f"""
WITH taken AS (
    INSERT INTO fleet_ingress_ids (route, id, digest, accepted, expires_at)
    VALUES ($1, $2, $3, {accepted}, now() + make_interval(secs => $4))
    ON CONFLICT (route, id) DO UPDATE
        SET digest = EXCLUDED.digest, accepted = {accepted}, started_at = now(),
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


_BEGIN = _begin(accepted=False)
_BEGIN_ACCEPTED = _begin(accepted=True)
_ACCEPTED = "UPDATE fleet_ingress_ids SET accepted = true WHERE route = $1 AND id = $2"
_ABANDON = "DELETE FROM fleet_ingress_ids WHERE route = $1 AND id = $2 AND NOT accepted"
_PRUNE = "DELETE FROM fleet_ingress_ids WHERE expires_at < now()"

#: Seconds after which an unconfirmed entry counts as abandoned (its process died
#: between taking the id and the broker's confirm).
STALE_PENDING = 60.0


def _seen(row: asyncpg.Record | None, digest: bytes) -> Seen:
    assert row is not None  # the outer SELECT always returns its row
    if row["taken"]:
        return Seen.NEW
    if row["accepted"] is None or not row["accepted"]:
        # Held by a publish in progress (or taken this very moment by another
        # replica, committed after this statement's snapshot).
        return Seen.IN_PROGRESS
    return Seen.DUPLICATE if bytes(row["digest"]) == digest else Seen.CONFLICT


async def take_accepted(
    connection: Database, route: str, message_id: str, body: bytes, window: float
) -> Seen:
    """Take the id inside the caller's transaction, as accepted once it commits
    (`accept: outbox`): the request's id and its event commit together, or neither."""
    digest = hashlib.sha256(body).digest()
    row = await connection.fetchrow(
        _BEGIN_ACCEPTED, route, message_id, digest, float(window), STALE_PENDING
    )
    return _seen(row, digest)


async def install(connection: Database) -> None:
    """Create `fleet_ingress_ids` if missing; replicas starting together take turns."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_ingress_ids'))")
        await connection.execute(SCHEMA)


class PostgresRecentIds:
    """Request ids in PostgreSQL (`fleet_ingress_ids`), shared by every replica.

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
        async with self._pool.acquire() as conn:
            await install(conn)
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
        return _seen(row, digest)

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
