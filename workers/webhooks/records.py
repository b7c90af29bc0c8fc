"""Every delivery attempt, recorded in PostgreSQL table `fleet_webhook_deliveries`
for `fleet webhooks deliveries`.

A record is written after the attempt's fate is settled on the broker and
before the ack, so a crash in between can record an attempt twice, never lose
one. Writing it never fails a delivery: the record is a log, not the message
path. Without a database, `NoRecords` keeps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import asyncpg

Outcome = Literal["delivered", "retry", "dead"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_webhook_deliveries (
    id           bigserial        PRIMARY KEY,
    subscription text             NOT NULL,
    message_id   text             NOT NULL,
    event_type   text             NOT NULL,
    attempt      integer          NOT NULL,
    url          text             NOT NULL,
    status       integer,
    error        text,
    latency_ms   double precision NOT NULL,
    outcome      text             NOT NULL,
    retry_queue  text,
    at           timestamptz      NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS fleet_webhook_deliveries_recent
    ON fleet_webhook_deliveries (subscription, at);
CREATE INDEX IF NOT EXISTS fleet_webhook_deliveries_message
    ON fleet_webhook_deliveries (message_id);
"""
_READY = "SELECT to_regclass('fleet_webhook_deliveries_message') IS NOT NULL"
_INSERT = """
INSERT INTO fleet_webhook_deliveries
    (subscription, message_id, event_type, attempt, url, status, error, latency_ms, outcome,
     retry_queue)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
_COLUMNS = (
    "subscription, message_id, event_type, attempt, url, status, error, latency_ms, outcome, "
    "retry_queue"
)


@dataclass(frozen=True)
class DeliveryRecord:
    """One attempt: which message went where, what came back, how long it took."""

    subscription: str
    message_id: str
    event_type: str
    attempt: int
    url: str
    status: int | None
    error: str | None
    latency_ms: float
    outcome: Outcome
    #: Where a retried message waits for its next attempt (`<queue>.retry.<delay>`).
    retry_queue: str | None = None
    at: datetime | None = None  # set by the database


class Records(Protocol):
    """Where attempts are recorded."""

    async def start(self) -> None:
        """Connect and create the table if it is missing."""

    async def close(self) -> None:
        """Release connections."""

    async def add(self, record: DeliveryRecord) -> None:
        """Record one attempt."""


class NoRecords:
    """No database: attempts are logged, not recorded."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def add(self, record: DeliveryRecord) -> None:
        return None


class PostgresRecords:
    """Attempts as rows of `fleet_webhook_deliveries`.

    Args:
        dsn: a PostgreSQL URL.
        pool_size: connections; one per concurrent delivery at most.
    """

    def __init__(self, dsn: str, *, pool_size: int = 4):
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        import asyncpg  # only processes that record load the driver

        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
        async with self._pool.acquire() as conn:
            if not await conn.fetchval(_READY):
                async with conn.transaction():
                    # Dispatchers starting together must not race on CREATE TABLE.
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('fleet_webhook_deliveries'))"
                    )
                    await conn.execute(SCHEMA)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def add(self, record: DeliveryRecord) -> None:
        if self._pool is None:
            raise RuntimeError("PostgresRecords.start() was not called")
        await self._pool.execute(
            _INSERT,
            record.subscription,
            record.message_id,
            record.event_type,
            record.attempt,
            record.url,
            record.status,
            record.error,
            record.latency_ms,
            record.outcome,
            record.retry_queue,
        )


async def recent(
    db: Any,
    *,
    subscription: str | None = None,
    message_id: str | None = None,
    failed: bool = False,
    limit: int = 50,
) -> list[DeliveryRecord]:
    """The latest attempts, newest first, filtered (an asyncpg connection as `db`).

    Raises:
        LookupError: the database has no `fleet_webhook_deliveries` table yet.
    """
    if not await db.fetchval("SELECT to_regclass('fleet_webhook_deliveries') IS NOT NULL"):
        raise LookupError(
            "this database has no webhook deliveries (fleet_webhook_deliveries): run "
            "`fleet webhooks run` with --database-url first"
        )
    conditions = [
        "($1::text IS NULL OR subscription = $1)",
        "($2::text IS NULL OR message_id = $2)",
    ]
    if failed:
        conditions.append("outcome <> 'delivered'")
    rows = await db.fetch(
        f"SELECT {_COLUMNS}, at FROM fleet_webhook_deliveries "
        f"WHERE {' AND '.join(conditions)} ORDER BY at DESC, id DESC LIMIT $3",
        subscription,
        message_id,
        limit,
    )
    return [DeliveryRecord(**dict(row)) for row in rows]
