"""The consumer's one object for what a worker keeps in its database.

Three stores, each a module of its own with its own table:

    claims        fleet_inbox     processed ids and their follow-ons (dedupe)
    group_commit                  the same claims, sharing a transaction
    timeline      fleet_events    the saga timeline, a row per handled event
    attempts      fleet_attempts  starts of a suspect delivery's handler (crash counts)

`PostgresInbox` opens the connection pool they share, creates their tables,
prunes them, and chooses per claim between a transaction of its own and group
commit (`commit_batch`); `MemoryInbox` is the claims in memory, for workers
without a database. The consumer calls:

    async with inbox.claim(worker, message_id, note) as claim: ...   (claims)
    async with inbox.claim_batch(worker, notes) as claim: ...         (claims, a batch handler's)
    await inbox.started(worker, message_id)                           (attempts)
    await inbox.note(note)                                            (timeline)

No store imports this module. timeline and attempts import nothing of
fleet's; claims imports the timeline (a claim writes its timeline row in its
own statement); group_commit imports claims and the timeline
(tests/unit/test_runtime_imports.py holds them to it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from workers.runtime import attempts, claims, timeline
from workers.runtime.attempts import PostgresAttempts
from workers.runtime.claims import BatchClaim, Claim, MemoryClaims, PostgresClaims
from workers.runtime.group_commit import GroupCommit
from workers.runtime.timeline import EventNote, PostgresTimeline

if TYPE_CHECKING:
    import asyncpg

    from workers.database import Database

__all__ = [
    # The facade
    "Inbox",
    "MemoryInbox",
    "PostgresInbox",
    # What passes through it (their homes: claims, timeline)
    "BatchClaim",
    "Claim",
    "EventNote",
    # Tuning
    "AUTO_BATCH",
    "WARM_CONNECTIONS",
    # Schema
    "SCHEMA",
    "STORES",
    "create_schema",
]

log = structlog.get_logger("fleet.inbox")

#: The stores whose tables an inbox creates, in order.
STORES = (claims, timeline, attempts)
#: Every store's DDL.
SCHEMA = "".join(store.SCHEMA for store in STORES)
#: Claims per batch with `commit_batch: auto`.
AUTO_BATCH = 64
#: Connections a PostgresInbox opens when it starts.
WARM_CONNECTIONS = 3
_NOT_STARTED = "PostgresInbox.start() was not called"


class _Store(Protocol):
    """A store module as `create_schema` sees it."""

    SCHEMA: str
    READY: str


async def create_schema(connection: Database, stores: tuple[_Store, ...]) -> None:
    """Create the stores' tables, unless they all exist already (one query then).

    Once the tables exist, nothing is touched: CREATE INDEX IF NOT EXISTS still
    locks a table against writes, and running handlers of other processes
    would deadlock with it.
    """
    ready = "SELECT " + " AND ".join(f"({store.READY})" for store in stores)
    if await connection.fetchval(ready):
        return
    async with connection.transaction():
        # Workers starting together must not race on CREATE TABLE; one lock for
        # every store, so workers of any version take turns.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_inbox'))")
        await connection.execute("".join(store.SCHEMA for store in stores))


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset is a round trip per checkout (advisory unlock, CLOSE
    ALL, UNLISTEN, RESET ALL): a quarter of the inbox's cost per delivery. The
    inbox's connections only ever serve claims and handlers' transactions, and
    asyncpg still rolls back a transaction left open. Session state a handler
    sets outside its transaction stays with the connection: handlers use
    SET LOCAL and pg_advisory_xact_lock, which end with the transaction
    (README: "What a handler may do with ctx.db").
    """


class Inbox(Protocol):
    """Where processed message ids, the timeline and crash counts are kept."""

    #: Whether a claim's `note` is written (the timeline); False: none is built.
    keeps_timeline: bool

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

    def claim_batch(
        self, worker: str, notes: Sequence[EventNote]
    ) -> AbstractAsyncContextManager[BatchClaim]:
        """Claim the messages of one batch handler call together (one transaction);
        committed when the block exits normally. Duplicates are left out of `fresh`."""
        ...

    async def started(self, worker: str, message_id: str) -> int | None:
        """Count one more start of a suspect delivery's handler; None if this inbox
        cannot keep the count across a crash."""

    async def note(self, note: EventNote) -> None:
        """Log an event outside a claim (a retry, a dead letter)."""


class MemoryInbox(MemoryClaims):
    """Claims in this process's memory (`MemoryClaims`): no cross-process or restart
    guarantee, no timeline, no crash counts.

    Args:
        capacity: ids remembered; the oldest are forgotten first.
        replays: claims whose follow-ons are kept for a replay.
    """

    keeps_timeline = False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def started(self, worker: str, message_id: str) -> int | None:
        return None  # memory dies with the process it would have to outlive

    async def note(self, note: EventNote) -> None:
        return None  # timelines need the database


class PostgresInbox:
    """The three stores in PostgreSQL, on one connection pool.

    Args:
        dsn: a PostgreSQL URL (``postgresql://user@host:5432/db``).
        worker: the worker whose rows this inbox prunes.
        retention: how long a processed id (and a crash count, a timeline row)
            is remembered; a redelivery older than this is processed again.
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

    keeps_timeline = True

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
        #: The stores, once started.
        self.claims: PostgresClaims | None = None
        self.timeline: PostgresTimeline | None = None
        self.attempts: PostgresAttempts | None = None
        self._group: GroupCommit | None = None
        #: Event types whose handlers wrote through ctx.db ("auto": claimed alone).
        self._writers: set[str] = set()
        self._pool: asyncpg.Pool | None = None
        self._pruner: asyncio.Task[None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (after `start`), for workers that keep state of their own."""
        if self._pool is None:
            raise RuntimeError(_NOT_STARTED)
        return self._pool

    async def start(self) -> None:
        # Imported here: workers without a database never load the driver.
        import asyncpg

        # Open at start what group commit uses at once (two batches and the
        # pruner), so the first deliveries do not wait for connections; the rest
        # open when handlers need them (PostgreSQL's connections are shared by
        # every worker process).
        pool = self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=min(self.pool_size, WARM_CONNECTIONS),
            max_size=self.pool_size,
            reset=_keep_session,
        )
        async with pool.acquire() as conn:
            await create_schema(conn, STORES)
        self.claims = PostgresClaims(pool, worker=self.worker, retention=self.retention)
        self.timeline = PostgresTimeline(pool, retention=self.retention)
        self.attempts = PostgresAttempts(pool, worker=self.worker, retention=self.retention)
        auto = self.commit_batch == "auto"
        max_batch = AUTO_BATCH if self.commit_batch == "auto" else self.commit_batch
        if max_batch > 1:
            self._group = GroupCommit(
                pool, max_batch=max_batch, on_write=self._wrote if auto else None
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
        if group is not None and (note is None or note.type not in self._writers):
            return group.claim(worker, message_id, note)
        alone = self.claims
        if alone is None:
            raise RuntimeError(_NOT_STARTED)
        return alone.claim(worker, message_id, note)

    def claim_batch(
        self, worker: str, notes: Sequence[EventNote]
    ) -> AbstractAsyncContextManager[BatchClaim]:
        # A batch is one transaction already: never group-committed.
        if self.claims is None:
            raise RuntimeError(_NOT_STARTED)
        return self.claims.claim_batch(worker, notes)

    def _wrote(self, event_type: str) -> None:
        """A batched handler wrote through ctx.db: its next deliveries get their own
        transactions, so it does not hold a batch's connection while others wait."""
        if event_type not in self._writers:
            self._writers.add(event_type)
            log.info("inbox.own_transactions", worker=self.worker, type=event_type)

    def started(self, worker: str, message_id: str) -> Coroutine[Any, Any, int | None]:
        # The store's coroutine itself (the Inbox's `async def started`), no frame
        # of the facade's own.
        if self.attempts is None:
            raise RuntimeError(_NOT_STARTED)
        return self.attempts.started(worker, message_id)

    async def note(self, note: EventNote) -> None:
        if self.timeline is None:
            raise RuntimeError(_NOT_STARTED)
        await self.timeline.note(note)

    async def prune(self) -> int:
        """Delete this worker's marks and crash counts older than the retention, and
        every worker's timeline rows older than it; returns how many marks."""
        if self.claims is None or self.attempts is None or self.timeline is None:
            raise RuntimeError(_NOT_STARTED)
        total = await self.claims.prune()
        await self.attempts.prune()
        await self.timeline.prune()
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
