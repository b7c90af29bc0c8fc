"""The relay's and the operator's queries on `fleet_outbox`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from workers.outbox.schema import RELAY_LOCK_CLASS, WAKE_UNFLUSHED
from workers.runtime.outgoing import Outgoing

if TYPE_CHECKING:
    import asyncpg

_UNSENT = """
SELECT id, key, exchange, routing_key, message_id, correlation_id, causation_id,
       type, version, headers, body, app_id, created_at
FROM fleet_outbox
WHERE parked_at IS NULL AND id <> ALL($2::bigint[])
ORDER BY id
LIMIT $1
"""
# Sent rows leave fleet_outbox for fleet_outbox_sent (schema.py says why), in one statement.
_MARK_SENT = """
WITH sent AS (
    DELETE FROM fleet_outbox WHERE id = ANY($1::bigint[])
    RETURNING id, key, exchange, routing_key, message_id, correlation_id, type, version,
              app_id, created_at
)
INSERT INTO fleet_outbox_sent (
    id, key, exchange, routing_key, message_id, correlation_id, type, version, app_id, created_at
)
SELECT * FROM sent
"""
_PARK = "UPDATE fleet_outbox SET parked_at = now(), reason = $2 WHERE id = $1"
# In chunks, so that pruning a large backlog never holds many row locks at once.
_PRUNE = """
DELETE FROM fleet_outbox_sent WHERE id IN (
    SELECT id FROM fleet_outbox_sent WHERE sent_at < now() - $1::interval LIMIT $2
)
"""
_STATUS = """
SELECT count(*) FILTER (WHERE parked_at IS NULL) AS unsent,
       count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked,
       (SELECT count(*) FROM fleet_outbox_sent) AS sent,
       extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL))
           AS oldest_seconds,
       (SELECT max(sent_at) FROM fleet_outbox_sent) AS last_sent
FROM fleet_outbox
"""
# The oldest unsent row, through the primary key: cheap enough to run every few seconds.
_OLDEST = """
SELECT extract(epoch FROM now() - created_at) FROM fleet_outbox
WHERE parked_at IS NULL ORDER BY id LIMIT 1
"""
_DEPTH = "SELECT count(*) FROM fleet_outbox WHERE parked_at IS NULL"
_PARKED_COUNT = "SELECT count(*) FROM fleet_outbox WHERE parked_at IS NOT NULL"
_PARKED = """
SELECT id, key, exchange, routing_key, message_id, type, version, created_at, parked_at, reason
FROM fleet_outbox WHERE parked_at IS NOT NULL ORDER BY id LIMIT $1
"""
_REQUEUE_IDS = """
UPDATE fleet_outbox SET parked_at = NULL, reason = NULL
WHERE parked_at IS NOT NULL AND id = ANY($1::bigint[])
"""
_REQUEUE_ALL = "UPDATE fleet_outbox SET parked_at = NULL, reason = NULL WHERE parked_at IS NOT NULL"
_TRY_LEAD = f"SELECT pg_try_advisory_lock({RELAY_LOCK_CLASS}, 0)"
_LEADER = f"""
SELECT pid, application_name, client_addr::text, backend_start FROM pg_locks
JOIN pg_stat_activity USING (pid)
WHERE locktype = 'advisory' AND classid = {RELAY_LOCK_CLASS} AND objid = 0 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

_headers = msgspec.json.Decoder(dict[str, str])


@dataclass(frozen=True)
class Row:
    """An unsent row, as the message the relay publishes."""

    id: int
    key: str
    message: Outgoing


def unsent_row(record: asyncpg.Record) -> Row:
    """A fetched row as its `Outgoing` message, published as workers publish theirs."""
    headers = record["headers"]
    message = Outgoing(
        exchange=record["exchange"],
        routing_key=record["routing_key"],
        body=record["body"],
        message_id=record["message_id"],
        correlation_id=record["correlation_id"],
        causation_id=record["causation_id"],
        type=record["type"],
        version=record["version"],
        mandatory=True,
        timestamp=record["created_at"],
        app_id=record["app_id"],
        trace=_headers.decode(headers) if headers else None,
    )
    return Row(record["id"], record["key"], message)


async def unsent(
    connection: asyncpg.Connection, limit: int, *, besides: Sequence[int] = ()
) -> list[Row]:
    """Up to `limit` committed, unsent, unparked rows, oldest id first, other than
    `besides` (the rows out on the wire, not yet marked)."""
    return [unsent_row(r) for r in await connection.fetch(_UNSENT, limit, list(besides))]


async def mark_sent(connection: asyncpg.Connection, ids: Sequence[int]) -> None:
    if ids:
        await connection.execute(_MARK_SENT, list(ids))


async def park(connection: asyncpg.Connection, parked: Sequence[tuple[int, str]]) -> None:
    """Set rows aside with their reasons: the relay no longer publishes them."""
    if parked:
        await connection.executemany(_PARK, parked)


async def prune(connection: asyncpg.Connection, retention: timedelta, chunk: int = 5000) -> int:
    """Delete rows sent longer than `retention` ago; how many."""
    removed = 0
    while True:
        status = await connection.execute(_PRUNE, retention, chunk)
        count = int(status.split()[-1])
        removed += count
        if count < chunk:
            return removed


async def try_lead(connection: asyncpg.Connection) -> bool:
    """Take the relay lock (session-scoped) if no other relay holds it."""
    return bool(await connection.fetchval(_TRY_LEAD))


async def gauges(connection: asyncpg.Connection) -> tuple[int, float, int]:
    """(unsent rows, age in seconds of the oldest unsent one or 0, parked rows)."""
    depth = await connection.fetchval(_DEPTH)
    oldest = await connection.fetchval(_OLDEST)
    parked = await connection.fetchval(_PARKED_COUNT)
    return int(depth), float(oldest or 0.0), int(parked)


@dataclass(frozen=True)
class Parked:
    """A row the broker could not route, set aside with its reason."""

    id: int
    key: str
    exchange: str
    routing_key: str
    message_id: str
    type: str
    version: int
    created_at: datetime
    parked_at: datetime
    reason: str


@dataclass(frozen=True)
class Status:
    """What `fleet outbox status` shows."""

    unsent: int
    parked: int
    sent: int
    oldest_seconds: float | None
    last_sent: datetime | None
    relay: str | None
    parked_rows: list[Parked]


async def status(connection: asyncpg.Connection, *, show: int = 20) -> Status:
    """The outbox's counts, its oldest unsent row's age, the relay holding the lock,
    and the first `show` parked rows."""
    counts = await connection.fetchrow(_STATUS)
    assert counts is not None  # an aggregate always returns its row
    leader = await connection.fetchrow(_LEADER)
    relay = None
    if leader is not None:
        where = leader["client_addr"] or "local socket"
        relay = f"pid {leader['pid']} ({leader['application_name'] or 'unnamed'}, {where})"
    parked = [Parked(**dict(r)) for r in await connection.fetch(_PARKED, show)]
    oldest = counts["oldest_seconds"]
    return Status(
        unsent=counts["unsent"],
        parked=counts["parked"],
        sent=counts["sent"],
        oldest_seconds=float(oldest) if oldest is not None else None,
        last_sent=counts["last_sent"],
        relay=relay,
        parked_rows=parked,
    )


async def requeue(connection: asyncpg.Connection, ids: Sequence[int] | None) -> int:
    """Give parked rows (`ids`, or all) back to the relay, and wake it; how many."""
    if ids is None:
        result = await connection.execute(_REQUEUE_ALL)
    else:
        result = await connection.execute(_REQUEUE_IDS, list(ids))
    given = int(result.split()[-1])
    if given:
        await connection.execute(WAKE_UNFLUSHED)
    return given
