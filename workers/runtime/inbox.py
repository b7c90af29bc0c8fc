"""Idempotency: a (worker, message_id) pair is processed at most once in effect.

The consumer claims a delivery before calling its handler:

    async with inbox.claim(worker, message_id) as claim:
        if claim.duplicate: publish claim.replay again; ack   (already processed)
        ... handler runs, writing through claim.db ...
        claim.keep(follow_ons)                                (stored with the mark)

`PostgresInbox` makes the claim a row in `fleet_inbox`, inserted in the same
transaction as the handler's own writes (`ctx.db`): the handler's effects and
the mark commit together or not at all. A concurrent duplicate waits on the
row lock and then sees the committed mark. The follow-on events are stored
with the mark (an outbox), so a process that dies after commit and before the
broker confirmed them publishes the very same messages when the delivery comes
back.

Without a database, `MemoryInbox` remembers recent ids in this process only:
it catches a redelivery to the same process, not one to another process or
after a restart. Handlers of such workers must be idempotent themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import structlog

from workers.runtime.outgoing import Outgoing, pack, unpack

if TYPE_CHECKING:
    import asyncpg

    from workers.runtime.group_commit import GroupCommit

log = structlog.get_logger("fleet.inbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_inbox (
    worker       text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    follow_ons   bytea,
    PRIMARY KEY (worker, message_id)
);
CREATE INDEX IF NOT EXISTS fleet_inbox_age ON fleet_inbox (worker, processed_at);
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
CREATE TABLE IF NOT EXISTS fleet_attempts (
    worker     text        NOT NULL,
    message_id text        NOT NULL,
    started    integer     NOT NULL,
    last_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker, message_id)
);
"""
_STARTED = """
INSERT INTO fleet_attempts (worker, message_id, started) VALUES ($1, $2, 1)
ON CONFLICT (worker, message_id)
DO UPDATE SET started = fleet_attempts.started + 1, last_at = now()
RETURNING started
"""
_PRUNE_ATTEMPTS = """
DELETE FROM fleet_attempts WHERE worker = $1 AND last_at < now() - $2::interval
"""
_SCHEMA_READY = """
SELECT to_regclass('fleet_inbox') IS NOT NULL AND to_regclass('fleet_events') IS NOT NULL
   AND to_regclass('fleet_attempts') IS NOT NULL AND to_regclass('fleet_events_age') IS NOT NULL
"""
_CLAIM = "INSERT INTO fleet_inbox (worker, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_STORED = "SELECT follow_ons FROM fleet_inbox WHERE worker = $1 AND message_id = $2"
_KEEP = "UPDATE fleet_inbox SET follow_ons = $3 WHERE worker = $1 AND message_id = $2"
_NOTE = """
INSERT INTO fleet_events (correlation_id, message_id, causation_id, type, worker, outcome,
                          emitted, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
# Claim and log in one round trip: the event row exists only if the claim
# succeeded, and both roll back with the handler's writes. Returns the event id.
_CLAIM_AND_NOTE = """
WITH claimed AS (
    INSERT INTO fleet_inbox (worker, message_id) VALUES ($5, $2)
    ON CONFLICT DO NOTHING RETURNING 1
)
INSERT INTO fleet_events (correlation_id, message_id, causation_id, type, worker, outcome,
                          emitted, detail)
SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM claimed)
RETURNING id
"""
# Keep the follow-ons with the mark and name them in the event row, in one round trip.
_KEEP_AND_EMITTED = """
WITH kept AS (
    UPDATE fleet_inbox SET follow_ons = $3 WHERE worker = $1 AND message_id = $2
)
UPDATE fleet_events SET emitted = $4 WHERE id = $5
"""
_PRUNE_EVENTS = "DELETE FROM fleet_events WHERE at < now() - $1::interval"
_PRUNE = """
DELETE FROM fleet_inbox WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM fleet_inbox WHERE worker = $1 AND processed_at < now() - $2::interval
    LIMIT 5000))
"""


_NOTHING: list[Outgoing] = []

#: Claims per batch with `commit_batch: auto`.
AUTO_BATCH = 64
#: Connections a PostgresInbox opens when it starts.
WARM_CONNECTIONS = 3


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset is a round trip per checkout (advisory unlock, CLOSE
    ALL, UNLISTEN, RESET ALL): a quarter of the inbox's cost per delivery. The
    inbox's connections only ever serve claims and handlers' transactions, and
    asyncpg still rolls back a transaction left open. Session state a handler
    sets outside its transaction stays with the connection: handlers use
    SET LOCAL and pg_advisory_xact_lock, which end with the transaction.
    """


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


class Claim:
    """One delivery's claim on the inbox."""

    __slots__ = ("db", "duplicate", "kept", "replay")

    def __init__(self, *, duplicate: bool, replay: list[Outgoing], db: Any = None):
        self.duplicate = duplicate
        self.replay = replay
        #: The transaction's connection (asyncpg), for the handler's own writes.
        self.db = db
        self.kept: list[Outgoing] = _NOTHING

    def keep(self, outgoing: list[Outgoing]) -> None:
        """Store these follow-on messages with the processed mark."""
        self.kept = outgoing


class Inbox(Protocol):
    """Where processed message ids are kept."""

    async def start(self) -> None:
        """Connect and create what is missing."""

    async def close(self) -> None:
        """Release connections."""

    def claim(
        self, worker: str, message_id: str, note: EventNote | None = None
    ) -> AbstractAsyncContextManager[Claim]:
        """Claim a delivery; committed when the block exits normally.

        `note` is the event's line in the saga timeline, written with the claim.
        """
        ...

    async def started(self, worker: str, message_id: str) -> int | None:
        """Count one more start of a suspect delivery's handler; None if this inbox
        cannot keep the count across a crash."""

    async def note(self, note: EventNote) -> None:
        """Log an event outside a claim (a retry, a dead letter)."""


class MemoryInbox:
    """Recent ids in this process's memory: no cross-process or restart guarantee.

    Args:
        capacity: ids remembered; the oldest are forgotten first.
    """

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        # The first key is the oldest. An OrderedDict, not a dict: a dict's
        # `next(iter(d))` walks over every slot deleted from its front, so evicting
        # the oldest would cost more with every message once the memory is full.
        self._seen: OrderedDict[tuple[str, str], list[Outgoing]] = OrderedDict()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def started(self, worker: str, message_id: str) -> int | None:
        return None  # memory dies with the process it would have to outlive

    async def note(self, note: EventNote) -> None:
        return None  # timelines need the database

    def claim(self, worker: str, message_id: str, note: EventNote | None = None) -> _MemoryClaim:
        # A plain object rather than @asynccontextmanager: this runs for every
        # message of a worker without a database, and a generator costs more.
        return _MemoryClaim(self, (worker, message_id))

    def _remember(self, key: tuple[str, str], kept: list[Outgoing]) -> None:
        seen = self._seen
        seen[key] = kept
        if len(seen) > self.capacity:
            seen.popitem(last=False)


class _MemoryClaim(Claim):
    __slots__ = ("_inbox", "_key")

    def __init__(self, inbox: MemoryInbox, key: tuple[str, str]):
        stored = inbox._seen.get(key)
        super().__init__(duplicate=stored is not None, replay=stored or _NOTHING)
        self._inbox = inbox
        self._key = key

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and not self.duplicate:
            self._inbox._remember(self._key, self.kept)


class PostgresInbox:
    """The inbox as rows of `fleet_inbox` in PostgreSQL.

    Args:
        dsn: a PostgreSQL URL (``postgresql://user@host:5432/db``).
        worker: the worker whose rows this inbox prunes.
        retention: how long a processed id is remembered; a redelivery older
            than this is processed again.
        pool_size: connections (one per concurrently running handler).
        prune_every: how often old rows are deleted (first at start); None: only
            when `prune` is called.
        commit_batch: above 1, deliveries that arrive together share one
            transaction of up to this many claims (see `group_commit`); 1, a
            transaction each; "auto", batches of up to `AUTO_BATCH` for the
            event types whose handlers have not yet written through ctx.db, a
            transaction each for the others (handlers are told apart by the
            event type in the claim's note).
    """

    def __init__(
        self,
        dsn: str,
        *,
        worker: str,
        retention: timedelta = timedelta(days=7),
        pool_size: int = 10,
        prune_every: timedelta | None = timedelta(minutes=10),
        commit_batch: int | Literal["auto"] = "auto",
    ):
        self.dsn = dsn
        self.worker = worker
        self.retention = retention
        self.pool_size = pool_size
        self.prune_every = prune_every
        self.commit_batch = commit_batch
        self._group: GroupCommit | None = None
        #: Event types whose handlers wrote through ctx.db ("auto": claimed alone).
        self._writers: set[str] = set()
        self._pool: asyncpg.Pool | None = None
        self._pruner: asyncio.Task[None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (after `start`), for workers that keep state of their own."""
        if self._pool is None:
            raise RuntimeError("PostgresInbox.start() was not called")
        return self._pool

    async def start(self) -> None:
        # Imported here: workers without a database never load the driver.
        import asyncpg

        # Open at start what group commit uses at once (two batches and the
        # pruner), so the first deliveries do not wait for connections; the rest
        # open when handlers need them (PostgreSQL's connections are shared by
        # every worker process).
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=min(self.pool_size, WARM_CONNECTIONS),
            max_size=self.pool_size,
            reset=_keep_session,
        )
        async with self._pool.acquire() as conn:
            # Once the tables exist, touch nothing: CREATE INDEX IF NOT EXISTS
            # still locks a table against writes, and running handlers of other
            # processes would deadlock with it.
            if not await conn.fetchval(_SCHEMA_READY):
                async with conn.transaction():
                    # Workers starting together must not race on CREATE TABLE.
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_inbox'))")
                    await conn.execute(SCHEMA)
        auto = self.commit_batch == "auto"
        max_batch = AUTO_BATCH if self.commit_batch == "auto" else self.commit_batch
        if max_batch > 1:
            from workers.runtime.group_commit import GroupCommit

            self._group = GroupCommit(
                self._pool, max_batch=max_batch, on_write=self._wrote if auto else None
            )
        if self.prune_every is not None:
            self._pruner = asyncio.create_task(self._prune_periodically(self.prune_every))

    async def close(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._pool is not None:
            await self._pool.close()

    def claim(
        self, worker: str, message_id: str, note: EventNote | None = None
    ) -> AbstractAsyncContextManager[Claim]:
        group = self._group
        if group is None or (note is not None and note.type in self._writers):
            return self._claim_alone(worker, message_id, note)
        return group.claim(worker, message_id, note)

    def _wrote(self, event_type: str) -> None:
        """A batched handler wrote through ctx.db: its next deliveries get their own
        transactions, so it does not hold a batch's connection while others wait."""
        if event_type not in self._writers:
            self._writers.add(event_type)
            log.info("inbox.own_transactions", worker=self.worker, type=event_type)

    @contextlib.asynccontextmanager
    async def _claim_alone(
        self, worker: str, message_id: str, note: EventNote | None
    ) -> AsyncIterator[Claim]:
        """The claim in a transaction of its own."""
        async with self.pool.acquire() as conn, conn.transaction():
            event_id = None
            if note is None:
                claimed = (await conn.execute(_CLAIM, worker, message_id)).endswith(" 1")
            else:
                event_id = await conn.fetchval(_CLAIM_AND_NOTE, *note)
                claimed = event_id is not None
            if not claimed:
                stored = await conn.fetchval(_STORED, worker, message_id)
                yield Claim(duplicate=True, replay=unpack(stored) if stored else [])
                return
            claim = Claim(duplicate=False, replay=[], db=conn)
            yield claim
            if claim.kept and event_id is not None:
                emitted = [o.type for o in claim.kept]
                await conn.execute(
                    _KEEP_AND_EMITTED, worker, message_id, pack(claim.kept), emitted, event_id
                )
            elif claim.kept:
                await conn.execute(_KEEP, worker, message_id, pack(claim.kept))

    async def started(self, worker: str, message_id: str) -> int | None:
        # Committed on its own, before the handler runs: it must survive the
        # process dying in the handler.
        count: int = await self.pool.fetchval(_STARTED, worker, message_id)
        return count

    async def note(self, note: EventNote) -> None:
        await self.pool.execute(_NOTE, *note)

    async def prune(self) -> int:
        """Delete this worker's marks older than the retention; returns how many."""
        total = 0
        while True:
            status = await self.pool.execute(_PRUNE, self.worker, self.retention)
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < 5000:
                await self.pool.execute(_PRUNE_ATTEMPTS, self.worker, self.retention)
                await self.pool.execute(_PRUNE_EVENTS, self.retention)
                return total

    async def _prune_periodically(self, every: timedelta) -> None:
        while True:
            try:
                deleted = await self.prune()
                if deleted:
                    log.info("inbox.pruned", worker=self.worker, deleted=deleted)
            except Exception as exc:  # a failed prune must not stop the worker
                log.warning("inbox.prune_failed", worker=self.worker, error=str(exc))
            await asyncio.sleep(every.total_seconds())
