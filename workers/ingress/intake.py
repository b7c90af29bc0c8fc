"""Accepting into the outbox (`accept: outbox`): a request's event and its id
commit together in the outbox's database, then the caller gets its 202.

    request ─▶ checks (as for every route) ─▶ BEGIN
      ─▶ take the request's id in fleet_ingress_ids (a repeat: roll back, answer it)
      ─▶ the event's row in fleet_outbox ─▶ COMMIT ─▶ wake the relay ─▶ 202

The broker is not involved: the relay (`fleet outbox run`) publishes the row,
confirmed, whenever the broker is reachable, so the ingress accepts while it
is down. A repeat is caught durably, whichever replica it reaches and across
restarts, because the id and the event cannot commit apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import asyncpg
import structlog

from contracts import Event
from workers.ingress import dedupe
from workers.ingress.dedupe import Seen
from workers.ingress.identity import Ids
from workers.ingress.routes import Route
from workers.outbox import Outbox
from workers.outbox.schema import install as install_outbox

if TYPE_CHECKING:
    from collections.abc import Iterable

log = structlog.get_logger("fleet.ingress")

#: The outbox rows' `app_id`.
APP_ID = "fleet.ingress"
#: Seconds a readiness probe waits for the database.
READY_TIMEOUT = 2.0


class _Repeat(Exception):
    """Roll the transaction back: the request's id was seen."""

    def __init__(self, seen: Seen):
        self.seen = seen


class OutboxIntake:
    """The outbox-mode routes' database: records their events in `fleet_outbox`.

    Args:
        dsn: the outbox's PostgreSQL database (the one its relay publishes from).
        exchanges: the exchanges its routes publish to (the first is the
            Outbox's default; every event names its own).
    """

    def __init__(self, dsn: str, exchanges: Iterable[str], *, max_connections: int = 10):
        self.dsn = dsn
        self.max_connections = max_connections
        self.outbox = Outbox(next(iter(sorted(exchanges))), app_id=APP_ID)
        self._pool: asyncpg.Pool | None = None
        self._waking = contextlib.AsyncExitStack()

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.max_connections,
            server_settings={"application_name": "fleet ingress"},
        )
        async with self._pool.acquire() as connection:
            await dedupe.install(connection)
            await install_outbox(connection)
        # Wake-ups from a connection of the outbox's own: a request waits for its commit only.
        await self._waking.enter_async_context(self.outbox.waking(self.dsn))

    async def close(self) -> None:
        await self._waking.aclose()
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("OutboxIntake.start() was not called")
        return self._pool

    async def record(
        self,
        route: Route,
        event: Event,
        ids: Ids,
        body: bytes,
        trace: Mapping[str, str] | None,
    ) -> Seen:
        """Commit the event's row (and, for a repeatable request, its id); NEW once
        committed, or what an earlier request with this id says about this one.

        Raises:
            asyncpg.DataError: PostgreSQL cannot store a value (the caller's fault).
            Exception: the database is unreachable, or the transaction failed.
        """
        async with self.pool.acquire() as connection:
            try:
                async with connection.transaction():
                    if ids.repeatable:
                        seen = await dedupe.take_accepted(
                            connection, route.path, ids.message_id, body, route.dedupe_window
                        )
                        if seen is not Seen.NEW:
                            raise _Repeat(seen)
                    await self.outbox.add(
                        connection,
                        event,
                        message_id=ids.message_id,
                        correlation_id=ids.correlation_id,
                        exchange=route.exchange,
                        routing_key=route.routing_key,
                        headers=trace,
                    )
            except _Repeat as repeat:
                return repeat.seen
            try:
                await self.outbox.wake(connection)
            except Exception as exc:  # committed: the relay's poll finds the row
                log.warning("ingress.outbox_wake_failed", error=str(exc) or type(exc).__name__)
        return Seen.NEW

    async def ready(self) -> bool:
        """Whether the database answers now."""
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.pool.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True
