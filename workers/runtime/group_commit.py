"""Group commit: deliveries that arrive together share one inbox transaction.

A per-delivery transaction costs a pool checkout, BEGIN, the claim and a
COMMIT that waits for the WAL flush: a few thousand deliveries a second at
best. Here the deliveries that reach `claim` in the same burst form a batch:

    one connection ─▶ BEGIN ─▶ claim every id in one statement
    ─▶ handlers run (concurrently; a handler that uses ctx.db holds the
       connection inside its own SAVEPOINT until it returns)
    ─▶ forget the claims of failed handlers, keep the follow-ons of the rest
    ─▶ COMMIT once ─▶ every member's `async with` exits

A member leaves its block only after the batch committed, so, as with a
transaction of its own, nothing is published or acked before its mark and
effects are durable. A failed handler's writes roll back to its savepoint and
its claim is withdrawn, so a retry claims the message again.

The price: handlers that use ctx.db run one at a time within a batch (each
holds the connection from its first query to its return), and a batch
commits when its slowest member finishes. So with `commit_batch: auto` (the
default) a handler's deliveries are batched only until it first writes
through ctx.db (`on_write`); from then on the inbox gives them a transaction
each. `commit_batch: N` batches every delivery, for quick handlers that write.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.runtime import timeline
from workers.runtime.claims import Claim
from workers.runtime.outgoing import pack, unpack
from workers.runtime.timeline import EventNote

if TYPE_CHECKING:
    import asyncpg

# Each claim's timeline row: its note's ids and type; what it emits is set later.
_NOTED = timeline.insert(
    "correlation_id", "message_id", "causation_id", "type", "worker", "outcome"
)
# Claim every id of a batch and write the timeline rows of those claimed, in one
# round trip. $1 worker; $2..$5 message ids, correlation ids, causation ids, types.
_CLAIM_MANY = f"""
WITH claimed AS (
    INSERT INTO fleet_inbox (worker, message_id)
    SELECT $1, m FROM unnest($2::text[]) AS m
    ON CONFLICT DO NOTHING RETURNING message_id
), noted AS (
    {_NOTED}
    SELECT n.c, n.m, n.ca, n.t, $1, 'processed'
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS n(m, c, ca, t)
    WHERE n.m IN (SELECT message_id FROM claimed)
    RETURNING id, message_id
)
SELECT message_id, id FROM noted
"""
_STORED_MANY = """
SELECT message_id, follow_ons FROM fleet_inbox WHERE worker = $1 AND message_id = ANY($2)
"""
_WITHDRAW = f"""
WITH gone AS (DELETE FROM fleet_inbox WHERE worker = $1 AND message_id = ANY($2))
{timeline.delete("$3")}
"""
_KEEP = f"""
WITH kept AS (
    UPDATE fleet_inbox SET follow_ons = $3 WHERE worker = $1 AND message_id = $2
)
{timeline.set_emitted("$4", "$5")}
"""


class GroupCommit:
    """Forms batches of claims for one worker and commits each batch once.

    At most `open_batches` batches hold a connection at once; while they do, the
    next batch keeps taking members. So a quiet worker commits each delivery at
    once, and a busy one commits bigger batches: the batch size follows the load.

    Args:
        pool: the inbox's connection pool.
        max_batch: claims per batch; a full batch stops taking members.
        open_batches: batches running at once.
        on_write: called with the event type of a member whose handler wrote
            through ctx.db (once per member).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int,
        open_batches: int = 2,
        on_write: Callable[[str], None] | None = None,
    ):
        self._pool = pool
        self.max_batch = max_batch
        self._on_write = on_write
        self._running = asyncio.Semaphore(open_batches)
        self._forming: _Batch | None = None

    def claim(self, worker: str, message_id: str, note: EventNote | None) -> _Member:
        """Join the batch being formed (or start one); enter the result to wait for the claim."""
        batch = self._forming
        if batch is None or batch.worker != worker:
            batch = self._forming = _Batch(
                self._pool, worker, self._closed, self._running, self._on_write
            )
        member = batch.join(message_id, note)
        if len(batch.members) >= self.max_batch:
            self._closed(batch)
        return member

    def _closed(self, batch: _Batch) -> None:
        if self._forming is batch:
            self._forming = None


class _Batch:
    """Claims made in one burst, committed in one transaction."""

    _savepoints = itertools.count()

    def __init__(
        self,
        pool: asyncpg.Pool,
        worker: str,
        closed: Callable[[_Batch], None],
        running: asyncio.Semaphore,
        on_write: Callable[[str], None] | None,
    ):
        self.pool = pool
        self.on_write = on_write
        self._running = running
        self.worker = worker
        self.members: list[_Member] = []
        self.conn: Any = None
        #: Held by a handler from its first query until it returns.
        self.lock = asyncio.Lock()
        self.claimed = _Signal()
        self.committed = _Signal()
        self._done = 0
        self._all_done = asyncio.Event()
        self._closed = closed
        self._task = asyncio.ensure_future(self._run())

    def join(self, message_id: str, note: EventNote | None) -> _Member:
        member = _Member(self, message_id, note)
        self.members.append(member)
        return member

    def finished(self) -> None:
        """One member's block ended (either way)."""
        self._done += 1
        if self._done == len(self.members):
            self._all_done.set()

    async def _run(self) -> None:
        # At least one turn of the loop, and as long as other batches are
        # running, and until its claim is sent: every delivery arriving
        # meanwhile (while a connection is taken and BEGIN answered) joins.
        await asyncio.sleep(0)
        async with self._running:
            await self._commit()

    async def _commit(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                self.conn = conn
                async with conn.transaction():
                    self._closed(self)
                    await self._claim(conn)
                    self.claimed.set()
                    await self._all_done.wait()
                    await self._settle(conn)
            self.committed.set()
        except BaseException as exc:
            self._closed(self)  # no later delivery may join a batch that failed
            for signal in (self.claimed, self.committed):
                signal.set(exc)
            # Members read the exception from the signals; nobody awaits this task.
            if not isinstance(exc, Exception):
                raise

    async def _claim(self, conn: Any) -> None:
        first: dict[str, _Member] = {}
        for member in self.members:
            if member.message_id in first:
                member.duplicate = True  # the same message twice in one burst
            else:
                first[member.message_id] = member
        ids = list(first)
        notes = [m.note for m in first.values()]
        rows = await conn.fetch(
            _CLAIM_MANY,
            self.worker,
            ids,
            [n.correlation_id if n else i for n, i in zip(notes, ids, strict=True)],
            [n.causation_id if n else None for n in notes],
            [n.type if n else "?" for n in notes],
        )
        events = {row["message_id"]: row["id"] for row in rows}
        for message_id, member in first.items():
            member.event_id = events.get(message_id)
            member.duplicate = member.event_id is None
        seen = [m.message_id for m in first.values() if m.duplicate]
        if seen:
            stored = dict(await conn.fetch(_STORED_MANY, self.worker, seen))
            for message_id in seen:
                kept = stored.get(message_id)
                first[message_id].replay = unpack(kept) if kept else []

    async def _settle(self, conn: Any) -> None:
        failed = [m for m in self.members if m.failed and not m.duplicate]
        if failed:
            await conn.execute(
                _WITHDRAW,
                self.worker,
                [m.message_id for m in failed],
                [m.event_id for m in failed],
            )
        kept = [m for m in self.members if m.kept and not m.failed and not m.duplicate]
        if kept:
            await conn.executemany(
                _KEEP,
                [
                    (self.worker, m.message_id, pack(m.kept), [o.type for o in m.kept], m.event_id)
                    for m in kept
                ],
            )

    def savepoint(self) -> str:
        return f"fleet_claim_{next(self._savepoints)}"


class _Signal:
    """A batch's moment (claimed, committed) that many members wait for.

    Each waiter gets a future of its own, so a member cancelled while waiting
    cancels only its own wait (what asyncio.shield does, for less: no extra
    future and callbacks per wait). Set once, with an exception if the batch failed.
    """

    __slots__ = ("_error", "_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._error: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def wait(self) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._set:
            self._settle(future)
        else:
            self._waiters.append(future)
        return future

    def set(self, error: BaseException | None = None) -> None:
        if self._set:
            return
        self._set, self._error = True, error
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            self._settle(future)

    def _settle(self, future: asyncio.Future[None]) -> None:
        if future.done():  # its member was cancelled
            return
        if self._error is None:
            future.set_result(None)
        else:
            future.set_exception(self._error)


class _Member(Claim):
    """One delivery's claim within a batch; an async context manager like any claim."""

    __slots__ = ("_batch", "event_id", "failed", "message_id", "note")

    def __init__(self, batch: _Batch, message_id: str, note: EventNote | None):
        super().__init__(duplicate=False, replay=[])
        self._batch = batch
        self.message_id = message_id
        self.note = note
        self.event_id: int | None = None
        self.failed = False

    async def __aenter__(self) -> Claim:
        try:
            await self._batch.claimed.wait()
        except BaseException:
            # Cancelled, or the claim failed: the batch must not wait for this member.
            self.failed = True
            self._batch.finished()
            raise
        if not self.duplicate:
            self.db = _SharedConnection(self._batch, self.note.type if self.note else None)
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        batch = self._batch
        db = self.db
        try:
            if isinstance(db, _SharedConnection):
                await db.leave(failed=exc_type is not None)
        finally:
            self.failed = exc_type is not None
            batch.finished()
        if exc_type is None and not self.duplicate:
            # Leave only once the mark and the effects are durable.
            await batch.committed.wait()


#: asyncpg Connection methods that talk to the server.
_QUERIES = frozenset(
    {
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "copy_records_to_table",
        "copy_to_table",
        "copy_from_table",
        "copy_from_query",
        "prepare",
    }
)


class _SharedConnection:
    """The batch's connection as one handler sees it: its first query takes the
    connection and opens a savepoint; `leave` releases or rolls back to it."""

    def __init__(self, batch: _Batch, event_type: str | None):
        self._batch = batch
        self._event_type = event_type
        self._savepoint: str | None = None

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._batch.conn, name)
        if name in _QUERIES:

            async def query(*args: Any, **kwargs: Any) -> Any:
                await self._enter()
                return await target(*args, **kwargs)

            return query
        if name == "transaction":
            return lambda **kwargs: _Nested(self, kwargs)
        return target

    async def _enter(self) -> None:
        if self._savepoint is None:
            batch = self._batch
            if batch.on_write is not None and self._event_type is not None:
                batch.on_write(self._event_type)
            await batch.lock.acquire()
            self._savepoint = batch.savepoint()
            await batch.conn.execute(f"SAVEPOINT {self._savepoint}")

    async def leave(self, *, failed: bool) -> None:
        savepoint, self._savepoint = self._savepoint, None
        if savepoint is None:
            return
        try:
            if failed:
                await self._batch.conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
            await self._batch.conn.execute(f"RELEASE SAVEPOINT {savepoint}")
        finally:
            self._batch.lock.release()


class _Nested:
    """`ctx.db.transaction()` inside a batch: a savepoint within the handler's own."""

    def __init__(self, shared: _SharedConnection, options: dict[str, Any]):
        self._shared = shared
        self._options = options
        self._transaction: Any = None

    async def __aenter__(self) -> Any:
        await self._shared._enter()
        self._transaction = self._shared._batch.conn.transaction(**self._options)
        return await self._transaction.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._transaction.__aexit__(*exc)
