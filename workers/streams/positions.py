"""Where a stream worker keeps its place: the offset it processed last, per stream.

    BrokerPositions    the broker's offset store for named consumers (store_offset,
                       query_offset): stored every `every` seconds and at shutdown,
                       so a restart reads again what came after the last store
    DatabasePositions  fleet_stream_offsets in the worker's database: the offset
                       commits in the handler's own transaction (`claim`), so what a
                       handler writes through ctx.db happens once per message

A worker with a database uses the second and still stores to the broker (for
`fleet stream offsets`); the database is the one it resumes from.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from rstream import Consumer, OffsetNotFound

from workers.errors import WorkerError
from workers.runtime.claims import BatchClaim, Claim
from workers.runtime.timeline import EventNote

if TYPE_CHECKING:
    import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_stream_offsets (
    consumer   text        NOT NULL,
    stream     text        NOT NULL,
    "offset"   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream)
);
"""
_STORE = """
INSERT INTO fleet_stream_offsets (consumer, stream, "offset") VALUES ($1, $2, $3)
ON CONFLICT (consumer, stream) DO UPDATE SET "offset" = EXCLUDED."offset", updated_at = now()
"""
_reading: ContextVar[Reading] = ContextVar("fleet_stream_reading")
_STORED = 'SELECT "offset" FROM fleet_stream_offsets WHERE consumer = $1 AND stream = $2'


class Positions(Protocol):
    """A stream consumer's offsets."""

    async def stored(self, stream: str) -> int | None:
        """The last offset processed on `stream`; None if it never stored one."""

    async def processed(self, stream: str, offset: int, *, committed: bool) -> None:
        """`offset` is done (`committed`: already written in the handler's transaction)."""

    async def flush(self) -> None:
        """Store what was processed since the last flush."""


class BrokerPositions:
    """The broker's offset store, under the consumer's name (one store per `flush`).

    Args:
        consumer: the rstream consumer (its locator connection stores offsets).
        name: the consumer reference offsets are stored under.
    """

    def __init__(self, consumer: Consumer, name: str):
        self._consumer = consumer
        self.name = name
        self._pending: dict[str, int] = {}

    async def stored(self, stream: str) -> int | None:
        try:
            offset: int = await self._consumer.query_offset(stream, self.name)
        except OffsetNotFound:
            return None
        return offset

    async def processed(self, stream: str, offset: int, *, committed: bool) -> None:
        self._pending[stream] = offset

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for stream, offset in pending.items():
            try:
                await self._consumer.store_offset(stream, self.name, offset)
            except BaseException:
                # Kept for the next flush (a newer offset of that stream wins).
                self._pending.setdefault(stream, offset)
                raise


class DatabasePositions:
    """fleet_stream_offsets, beside the broker's store; resumes from the database.

    Args:
        pool: the worker's asyncpg pool.
        name: the consumer name (the table's `consumer`).
        broker: the broker's store, kept up to date for `fleet stream offsets`.
    """

    def __init__(self, pool: asyncpg.Pool, name: str, broker: BrokerPositions):
        self._pool = pool
        self.name = name
        self._broker = broker

    async def stored(self, stream: str) -> int | None:
        offset: int | None = await self._pool.fetchval(_STORED, self.name, stream)
        return offset

    async def processed(self, stream: str, offset: int, *, committed: bool) -> None:
        if not committed:  # parked, or handled without a claim: its own statement
            await self._pool.execute(_STORE, self.name, stream, offset)
        await self._broker.processed(stream, offset, committed=True)

    async def flush(self) -> None:
        await self._broker.flush()


class Reading:
    """The stream message a task is handling: where, and whether its claim committed."""

    __slots__ = ("committed", "offset", "stream")

    def __init__(self, stream: str, offset: int):
        self.stream = stream
        self.offset = offset
        self.committed = False


class OffsetClaims:
    """The handler stage's inbox for a stream worker with a database: each claim is a
    transaction that also stores the offset of the message being handled (`reading`,
    set by the consumer first), so the handler's writes and the offset commit
    together. Nothing is a duplicate: a consumer resumes after its committed
    offset, so it never reads a committed message twice.

    The message is a context variable: each partition of a super stream is read in
    a task of its own, and their messages are handled at the same time.

    Args:
        pool: the worker's asyncpg pool.
        name: the consumer name.
    """

    keeps_timeline = False  # a stream worker's claims write no timeline

    def __init__(self, pool: asyncpg.Pool, name: str):
        self._pool = pool
        self.name = name

    def reading(self, stream: str, offset: int) -> Reading:
        """Mark the message this task handles now; its `committed` tells if a claim did."""
        current = Reading(stream, offset)
        _reading.set(current)
        return current

    async def start(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        """The pool is the caller's."""

    @contextlib.asynccontextmanager
    async def claim(
        self, worker: str, message_id: str, note: EventNote | None = None
    ) -> AsyncIterator[Claim]:
        current = _reading.get()
        async with self._pool.acquire() as conn, conn.transaction():
            yield Claim(duplicate=False, replay=[], db=conn)
            await conn.execute(_STORE, self.name, current.stream, current.offset)
        current.committed = True

    def claim_batch(
        self, worker: str, notes: Sequence[EventNote]
    ) -> AbstractAsyncContextManager[BatchClaim]:
        """Never called: a stream worker hands a batch handler one message at a time
        (its single-message path), in offset order."""
        raise WorkerError(f"worker {worker!r} reads a stream: its messages are not batched")

    async def started(self, worker: str, message_id: str) -> int | None:
        return None  # nothing is redelivered on a stream

    async def note(self, note: EventNote) -> None:
        """Stream workers write no timeline rows (the stream is the record)."""
