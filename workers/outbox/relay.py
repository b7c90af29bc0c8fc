"""The relay: publishes committed outbox rows, confirmed, in commit order per key.

    connect to PostgreSQL ─▶ take the relay lock (else stand by, trying every `poll`)
      ─▶ LISTEN fleet_outbox ─▶ connect to the broker (`keep_connected`)
        ─▶ fetch unsent rows in id order ─▶ publish them in waves (`waves`), mandatory,
           each confirmed ─▶ mark the confirmed ones sent, park the returned ones
        ─▶ again at once while rows keep coming; nothing left: sleep until a
           producer's wake-up (NOTIFY after its commit), or `poll` at the latest

Two batches overlap: while one batch awaits its confirms the relay fetches
the next (leaving out the rows on the wire), and it records a batch's
outcome while the next is on the wire. The next batch goes out only once
the previous one's confirms are all in, so a key's row never overtakes an
earlier row of its key that must be sent again; when one must, the rows
fetched meanwhile are dropped and fetched afresh.

Several relays may run against one database: the one holding the
session-scoped advisory lock publishes, the others stand by and take over
within `poll` seconds of its connection ending (PostgreSQL releases the lock
the moment the holder's session dies). A single publisher per outbox is what
keeps per-key order simple and exact: with row locks (FOR UPDATE SKIP LOCKED)
two relays would publish the same key's rows side by side.

While the broker is down the relay waits in `keep_connected`'s backoff and
does not query the database; while PostgreSQL is down it reconnects with its
own backoff. A row is marked sent only after its confirm, so a relay killed
between the two publishes that row again: at least once, with the same message
id, which the consumers' inboxes drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

import aiormq
import asyncpg
import structlog
from aio_pika.abc import AbstractConnection

from workers.errors import PublishFailed, PublishNacked
from workers.outbox import store
from workers.outbox.schema import CHANNEL, install
from workers.outbox.store import Row
from workers.outbox.waves import unblocked, waves
from workers.runtime.connection import CONNECTION_ERRORS
from workers.runtime.nodes import NodeRing
from workers.runtime.outgoing import Outgoing
from workers.runtime.publisher import Publisher
from workers.runtime.reconnect import Backoff, Connected, keep_connected
from workers.runtime.waiting import wait_any

log = structlog.get_logger("fleet.outbox")

#: Errors of a PostgreSQL connection that went away: reconnect, never crash.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
    TimeoutError,
)

T = TypeVar("T")

#: A publish whose connection or channel went: its row waits for the next session.
_LOST: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, aiormq.exceptions.ChannelClosed)

#: Seconds before rows the broker nacked are offered again.
NACK_PAUSE = 0.2


class DatabaseLost(Exception):
    """The relay's PostgreSQL connection failed: its lock is gone with it."""


#: What ends a database session: a failed query's connection, or the connect itself.
_DOWN: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, DatabaseLost)


@dataclass
class RelayStats:
    """What this relay did, for tests and the closing log line."""

    published: int = 0
    parked: int = 0
    batches: int = 0
    resent: int = 0
    #: Seconds this relay held the lock, once per time it was taken.
    leads: list[float] = field(default_factory=list)


@dataclass
class _Outcome:
    sent: list[int] = field(default_factory=list)
    parked: list[tuple[int, str]] = field(default_factory=list)
    held: int = 0
    lost: bool = False


@dataclass
class _OnTheWire:
    """A batch being published: its row ids (not marked sent yet) and its outcome."""

    ids: list[int]
    task: asyncio.Task[_Outcome]


class Relay:
    """Publishes one database's outbox to the broker until stopped.

    Args:
        database_url: the producers' PostgreSQL database (where `fleet_outbox` is).
        amqp_url: the broker, one URL or several comma-separated (a cluster).
        name: the outbox's name in logs, metrics and the connection names.
        batch: rows fetched and published per round.
        poll: the longest sleep without a wake-up, and how often a standby relay
            tries the lock.
        retention: how long sent rows are kept before they are pruned.
        prune_every: seconds between prunes.
        gauge_every: seconds between readings of the depth and oldest age (metrics).
    """

    def __init__(
        self,
        database_url: str,
        amqp_url: str,
        *,
        name: str = "default",
        batch: int = 500,
        poll: float = 5.0,
        retention: timedelta = timedelta(hours=24),
        prune_every: float = 60.0,
        gauge_every: float | None = 5.0,
    ):
        self.database_url = database_url
        self.nodes = NodeRing(amqp_url)
        self.name = name
        self.batch = batch
        self.poll = poll
        self.retention = retention
        self.prune_every = prune_every
        self.gauge_every = gauge_every
        self.stats = RelayStats()
        #: Set while this relay holds the lock (tests wait on it).
        self.leading = asyncio.Event()
        self._wake = asyncio.Event()
        self._pruned_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; reconnects to either side as needed."""
        gauges = asyncio.create_task(self._gauges(stop)) if self.gauge_every else None
        backoff = Backoff(base=0.5, cap=10.0)
        failures = 0
        try:
            while not stop.is_set():
                try:
                    await self._with_database(stop)
                    failures = 0
                except _DOWN as exc:
                    failures += 1
                    delay = backoff.delay(failures)
                    log.warning(
                        "outbox.database_unreachable",
                        outbox=self.name,
                        error=str(exc) or type(exc).__name__,
                        retry_in=round(delay, 2),
                    )
                    await wait_any(stop, seconds=delay)
        finally:
            if gauges is not None:
                gauges.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gauges

    async def _with_database(self, stop: asyncio.Event) -> None:
        """One database session: stand by for the lock, then relay while it holds."""
        db = await self._connect()
        try:
            await install(db)
            if not await self._take_lock(db, stop):
                return
            started = time.monotonic()
            self.leading.set()
            self._set_active(1)
            log.info("outbox.relay_active", outbox=self.name)
            await db.add_listener(CHANNEL, self._notified)
            try:
                await keep_connected(
                    self.nodes,
                    lambda connection, connected: self._session(db, connection, connected, stop),
                    name=f"fleet outbox {self.name}",
                    stop=stop,
                    fields={"outbox": self.name},
                )
            finally:
                self.leading.clear()
                self._set_active(0)
                self.stats.leads.append(time.monotonic() - started)
        finally:
            with contextlib.suppress(*DATABASE_ERRORS):
                await asyncio.wait_for(db.close(), 5)

    async def _connect(self) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(
            self.database_url,
            timeout=10,
            server_settings={"application_name": f"fleet outbox relay {self.name}"},
        )
        return connection

    async def _take_lock(self, db: asyncpg.Connection, stop: asyncio.Event) -> bool:
        """Hold the relay lock, trying every `poll` seconds while another relay has it;
        False if stopped first."""
        announced = False
        while not stop.is_set():
            if await store.try_lead(db):
                return True
            if not announced:
                log.info("outbox.standby", outbox=self.name, reason="another relay is active")
                log.info("outbox.ready", outbox=self.name, active=False)
                announced = True
            await wait_any(stop, seconds=self.poll)
        return False

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _session(
        self,
        db: asyncpg.Connection,
        connection: AbstractConnection,
        connected: Connected,
        stop: asyncio.Event,
    ) -> bool:
        """Relay on one broker connection until it is lost (True) or `stop` (False)."""
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        wrapper = await connection.channel(publisher_confirms=True, on_return_raises=True)
        wrapper.close_callbacks.add(lambda *_: lost.set())
        publisher = Publisher(await wrapper.get_underlay_channel())
        connected.began()
        log.info("outbox.ready", outbox=self.name, active=True)
        out: _OnTheWire | None = None
        try:
            while not stop.is_set() and not lost.is_set():
                self._wake.clear()
                await self._prune_if_due(db)
                rows = await _db(store.unsent(db, self.batch, besides=out.ids if out else ()))
                if out is not None:
                    outcome, out = await out.task, None
                    if outcome.lost or outcome.held:
                        # `rows` may hold a later row of a key whose row must go again:
                        # drop them, and fetch afresh once this batch is recorded.
                        await self._record(db, outcome)
                        if outcome.lost:
                            return True
                        await wait_any(stop, lost, seconds=NACK_PAUSE)
                        continue
                    if rows:
                        out = self._send(publisher, rows)
                    # Recorded while the next batch is on the wire: the database's
                    # round trips overlap the broker's confirms.
                    await self._record(db, outcome)
                elif rows:
                    out = self._send(publisher, rows)
                else:
                    await wait_any(stop, lost, self._wake, seconds=self.poll)
                # Otherwise look again at once: more may have committed while a batch
                # was out, and producers need not wake a relay that is busy.
            if out is not None:  # stopping, or the connection went: settle the last batch
                outcome, out = await out.task, None
                await self._record(db, outcome)
                if outcome.lost:
                    return True
            return not stop.is_set()
        finally:
            if out is not None:  # the database went: its rows go again next session
                out.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await out.task

    def _send(self, publisher: Publisher, rows: Sequence[Row]) -> _OnTheWire:
        """Start publishing `rows`; the batch's outcome comes from its task."""
        return _OnTheWire(
            [row.id for row in rows], asyncio.create_task(self._publish(publisher, rows))
        )

    async def _publish(self, publisher: Publisher, rows: Sequence[Row]) -> _Outcome:
        """Publish `rows` wave by wave; what was confirmed, parked and held back."""
        outcome = _Outcome()
        held: set[str] = set()
        self.stats.batches += 1
        for wave in waves(rows):
            ready = list(unblocked(wave, held))
            if not ready:
                continue
            results = await asyncio.gather(
                *(publisher.publish_outgoing(row.message) for row in ready),
                return_exceptions=True,
            )
            for row, result in zip(ready, results, strict=True):
                if result is None:
                    outcome.sent.append(row.id)
                elif isinstance(result, PublishNacked):
                    held.add(row.key)
                    outcome.held += 1
                elif isinstance(result, PublishFailed):
                    outcome.parked.append((row.id, str(result)))
                elif (reason := refused(result, row.message)) is not None:
                    # The broker closed the channel (a missing exchange, no permission):
                    # the wave's other publishes fail with it and are sent again.
                    outcome.parked.append((row.id, reason))
                    outcome.lost = True
                else:
                    held.add(row.key)
                    outcome.held += 1
                    outcome.lost = True
                    if not isinstance(result, _LOST):
                        log.error(
                            "outbox.publish_error",
                            outbox=self.name,
                            message_id=row.message.message_id,
                            error=repr(result),
                        )
            if outcome.lost:
                break
        # Rows never attempted because the batch ended early wait for the next round.
        return outcome

    async def _record(self, db: asyncpg.Connection, outcome: _Outcome) -> None:
        """Mark the confirmed rows sent and park the returned ones."""
        await _db(store.mark_sent(db, outcome.sent))
        await _db(store.park(db, outcome.parked))
        self.stats.published += len(outcome.sent)
        self.stats.parked += len(outcome.parked)
        self.stats.resent += outcome.held
        if self.gauge_every:
            from workers.outbox import metrics

            metrics.PUBLISHED.labels(self.name).inc(len(outcome.sent))
            metrics.PARKED_ROWS.labels(self.name).inc(len(outcome.parked))
        for row_id, reason in outcome.parked:
            log.warning("outbox.parked", outbox=self.name, row=row_id, reason=reason)

    async def _prune_if_due(self, db: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now - self._pruned_at < self.prune_every:
            return
        self._pruned_at = now
        removed = await _db(store.prune(db, self.retention))
        if removed:
            log.info("outbox.pruned", outbox=self.name, rows=removed)

    async def _gauges(self, stop: asyncio.Event) -> None:
        """Read the depth, oldest age and parked count every `gauge_every` seconds."""
        from workers.outbox import metrics

        assert self.gauge_every is not None
        depth, oldest, parked = (
            metrics.DEPTH.labels(self.name),
            metrics.OLDEST.labels(self.name),
            metrics.PARKED.labels(self.name),
        )
        db: asyncpg.Connection | None = None
        while not stop.is_set():
            try:
                if db is None or db.is_closed():
                    db = await self._connect()
                    await install(db)
                unsent, age, set_aside = await store.gauges(db)
                depth.set(unsent)
                oldest.set(age)
                parked.set(set_aside)
            except DATABASE_ERRORS:
                db = None  # the main loop logs the outage; try again next time
            await wait_any(stop, seconds=self.gauge_every)
        if db is not None:
            with contextlib.suppress(*DATABASE_ERRORS):
                await db.close()

    def _set_active(self, value: int) -> None:
        if self.gauge_every:
            from workers.outbox import metrics

            metrics.ACTIVE.labels(self.name).set(value)


async def _db(operation: Awaitable[T]) -> T:
    """Await a query; a lost connection becomes `DatabaseLost`, which ends the broker
    session too (the relay lock went with the connection)."""
    try:
        return await operation
    except DATABASE_ERRORS as exc:
        raise DatabaseLost(str(exc) or type(exc).__name__) from exc


# How the broker names the exchange (and topic) when it closes a channel over a
# publish: a missing exchange (404), or a user without the right (403).
_REFUSALS = (
    re.compile(r"no exchange '(?P<exchange>.*)' in vhost"),
    re.compile(r"access to topic '(?P<topic>.*)' in exchange '(?P<exchange>.*)' in vhost"),
    re.compile(r"access to exchange '(?P<exchange>.*)' in vhost"),
)


def refused(error: BaseException, message: Outgoing) -> str | None:
    """Why the broker refused `message`, if the channel's closing names its exchange
    (and topic); None when it names another message's (or none)."""
    if not isinstance(
        error, (aiormq.exceptions.ChannelNotFoundEntity, aiormq.exceptions.ChannelAccessRefused)
    ):
        return None
    text = getattr(getattr(error, "frame", None), "reply_text", None) or str(error)
    for pattern in _REFUSALS:
        found = pattern.search(text)
        if found is None:
            continue
        topic = found.groupdict().get("topic")
        if found["exchange"] != message.exchange or topic not in (None, message.routing_key):
            return None
        return f"the broker refused it: {text}"
    return None
