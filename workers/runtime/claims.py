"""Claims: a (worker, message_id) pair is processed at most once in effect.

The inbox proper. The consumer claims a delivery before calling its handler:

    async with inbox.claim(worker, message_id, note) as claim:
        if claim.duplicate: publish claim.replay again; ack   (already processed)
        ... handler runs, writing through claim.db ...
        claim.keep(follow_ons)                                (stored with the mark)

`PostgresClaims` makes the claim a row in `fleet_inbox`, inserted in the same
transaction as the handler's own writes (`ctx.db`): the handler's effects and
the mark commit together or not at all. A concurrent duplicate waits on the
row lock and then sees the committed mark. The follow-on events are stored
with the mark (an outbox), so a process that dies after commit and before the
broker confirmed them publishes the very same messages when the delivery comes
back. Here each claim has a transaction of its own; `group_commit` shares one
among claims that arrive together, on the same table.

A claim with a note writes the event's timeline row (`timeline`) in the same
statement: one round trip, and the row exists only if the claim committed.

Without a database, `MemoryClaims` remembers recent ids in this process only
(10,000 by default, the topology's `memory_inbox`), and the follow-ons of the
most recent claims: it catches a redelivery to the same process, not one to
another process or after a restart. Handlers of such workers must be
idempotent themselves.

This module owns `fleet_inbox` (with `group_commit`); it imports the timeline's
statements and the outgoing messages' codec, nothing else of fleet's runtime.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from workers.runtime import timeline
from workers.runtime.outgoing import Outgoing, pack, unpack
from workers.runtime.timeline import EventNote

if TYPE_CHECKING:
    import asyncpg

    from workers.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_inbox (
    worker       text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    follow_ons   bytea,
    PRIMARY KEY (worker, message_id)
);
CREATE INDEX IF NOT EXISTS fleet_inbox_age ON fleet_inbox (worker, processed_at);
"""
#: True once SCHEMA has run.
READY = "to_regclass('fleet_inbox') IS NOT NULL"

_CLAIM = "INSERT INTO fleet_inbox (worker, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
_STORED = "SELECT follow_ons FROM fleet_inbox WHERE worker = $1 AND message_id = $2"
_KEEP = "UPDATE fleet_inbox SET follow_ons = $3 WHERE worker = $1 AND message_id = $2"
# Claim and log in one round trip: the event row exists only if the claim
# succeeded, and both roll back with the handler's writes. Returns the event id.
# The parameters are the note's fields, in order ($5 is its worker).
_CLAIM_AND_NOTE = f"""
WITH claimed AS (
    INSERT INTO fleet_inbox (worker, message_id) VALUES ($5, $2)
    ON CONFLICT DO NOTHING RETURNING 1
)
{timeline.insert()}
SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM claimed)
RETURNING id
"""
# Keep the follow-ons with the mark and name them in the event row, in one round trip.
_KEEP_AND_EMITTED = f"""
WITH kept AS (
    UPDATE fleet_inbox SET follow_ons = $3 WHERE worker = $1 AND message_id = $2
)
{timeline.set_emitted("$4", "$5")}
"""
# A batch handler's claims (`claim_batch`): every id and its timeline row in one
# round trip; returns the ids claimed (the others were processed before).
# $1 worker; $2..$5 message ids, correlation ids, causation ids, types.
_CLAIM_BATCH = f"""
WITH claimed AS (
    INSERT INTO fleet_inbox (worker, message_id)
    SELECT $1, m FROM unnest($2::text[]) AS m
    ON CONFLICT DO NOTHING RETURNING message_id
), noted AS (
    {timeline.insert("correlation_id", "message_id", "causation_id", "type", "worker", "outcome")}
    SELECT n.c, n.m, n.ca, n.t, $1, 'processed'
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS n(m, c, ca, t)
    WHERE n.m IN (SELECT message_id FROM claimed)
)
SELECT message_id FROM claimed
"""
_STORED_BATCH = """
SELECT follow_ons FROM fleet_inbox
WHERE worker = $1 AND message_id = ANY($2) AND follow_ons IS NOT NULL
"""
#: Marks deleted per statement when pruning, so no statement locks many rows for long.
PRUNE_BATCH = 5000
_PRUNE = f"""
DELETE FROM fleet_inbox WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM fleet_inbox WHERE worker = $1 AND processed_at < now() - $2::interval
    LIMIT {PRUNE_BATCH}))
"""

_NOTHING: list[Outgoing] = []


class Claim:
    """One delivery's claim on the inbox."""

    __slots__ = ("db", "duplicate", "kept", "replay")

    def __init__(self, *, duplicate: bool, replay: list[Outgoing], db: Database | None = None):
        self.duplicate = duplicate
        self.replay = replay
        #: The transaction's connection (asyncpg), for the handler's own writes.
        self.db = db
        self.kept: list[Outgoing] = _NOTHING

    def keep(self, outgoing: list[Outgoing]) -> None:
        """Store these follow-on messages with the processed mark."""
        self.kept = outgoing


class BatchClaim:
    """A batch handler's claim on the inbox, for every message of one call.

    `fresh` are the ids this claim processes, in order; the others of the batch
    were processed before (duplicates), and `replay` holds the follow-ons stored
    with them. The follow-ons of the call are kept with the first fresh id.
    """

    __slots__ = ("db", "fresh", "kept", "replay")

    def __init__(self, fresh: list[str], replay: list[Outgoing], db: Database | None = None):
        self.fresh = fresh
        self.replay = replay
        self.db = db
        self.kept: list[Outgoing] = _NOTHING

    def keep(self, outgoing: list[Outgoing]) -> None:
        """Store these follow-on messages with the processed marks."""
        self.kept = outgoing


def _unique(notes: Sequence[EventNote]) -> list[EventNote]:
    """The notes of distinct message ids, the first of each (a message published
    twice can arrive twice in one batch)."""
    return list({note.message_id: note for note in reversed(notes)}.values())[::-1]


#: Ids a worker without a database remembers by default: about 1.4 MiB (32-character ids).
MEMORY_IDS = 10_000
#: Recent claims whose follow-ons are kept for a replay (see `MemoryClaims`).
MEMORY_REPLAYS = 1_000


class MemoryClaims:
    """Recent ids in this process's memory: no cross-process or restart guarantee.

    A duplicate reaches the same process only when its channel or connection
    was lost after the handler ran, and the broker redelivers what was unacked
    at once: the deliveries that were in flight (at most the prefetch). So the
    follow-on events of only the `replays` most recent claims that emitted any
    are kept. When a claim's follow-ons are forgotten its id is forgotten with
    them, so a later duplicate (a retry of a delivery whose publish failed, say)
    runs the handler again instead of being acked without its follow-ons. Ids of
    claims without follow-ons are kept for `capacity` claims: the exact strings
    (a digest could collide and drop a new message), about 140 bytes each with
    32-character ids (the string, its set slot and its place in the deque).

    Args:
        capacity: ids remembered per worker; the oldest are forgotten first.
        replays: claims whose follow-ons are kept for a replay.
    """

    def __init__(self, capacity: int = MEMORY_IDS, replays: int = MEMORY_REPLAYS):
        self.capacity = max(1, capacity)
        self.replays = max(1, min(replays, self.capacity))
        # Per worker: the ids (a set) and their order (a deque, to evict the oldest
        # in O(1)); no tuple per id, no ordered-dict node per id.
        self._ids: dict[str, set[str]] = {}
        self._order: dict[str, deque[str]] = {}
        self._kept: OrderedDict[tuple[str, str], list[Outgoing]] = OrderedDict()

    def claim(self, worker: str, message_id: str, note: EventNote | None = None) -> _MemoryClaim:
        """Claim a delivery; remembered when the block exits normally (`note` is unused:
        timelines need the database)."""
        # A plain object rather than @asynccontextmanager: this runs for every
        # message of a worker without a database, and a generator costs more.
        return _MemoryClaim(self, worker, message_id)

    @contextlib.asynccontextmanager
    async def claim_batch(
        self, worker: str, notes: Sequence[EventNote]
    ) -> AsyncIterator[BatchClaim]:
        """Claim a batch's messages; remembered when the block exits normally."""
        ids = [note.message_id for note in _unique(notes)]
        fresh = [i for i in ids if not self.seen(worker, i)]
        replay = [o for i in ids if i not in fresh for o in self.replay(worker, i)]
        claim = BatchClaim(fresh, replay)
        yield claim
        for i, message_id in enumerate(fresh):
            self._remember(worker, message_id, claim.kept if i == 0 else _NOTHING)

    def seen(self, worker: str, message_id: str) -> bool:
        ids = self._ids.get(worker)
        return ids is not None and message_id in ids

    def replay(self, worker: str, message_id: str) -> list[Outgoing]:
        return self._kept.get((worker, message_id), _NOTHING)

    def _remember(self, worker: str, message_id: str, kept: list[Outgoing]) -> None:
        ids = self._ids.get(worker)
        if ids is None:
            ids = self._ids[worker] = set()
            self._order[worker] = deque()
        order = self._order[worker]
        ids.add(message_id)
        order.append(message_id)
        if len(order) > self.capacity:
            ids.discard(order.popleft())
        if kept:
            self._kept[(worker, message_id)] = kept
            if len(self._kept) > self.replays:
                # Its follow-ons go, so its id goes too: a duplicate of it runs the
                # handler again (at least once) rather than being acked with no replay,
                # which would lose follow-ons that were never confirmed (a retry of a
                # delivery whose publish failed comes back much later).
                (old_worker, old_id), _ = self._kept.popitem(last=False)
                self._ids[old_worker].discard(old_id)


class _MemoryClaim(Claim):
    __slots__ = ("_inbox", "_message_id", "_worker")

    def __init__(self, inbox: MemoryClaims, worker: str, message_id: str):
        duplicate = inbox.seen(worker, message_id)
        super().__init__(
            duplicate=duplicate,
            replay=inbox.replay(worker, message_id) if duplicate else _NOTHING,
        )
        self._inbox = inbox
        self._worker = worker
        self._message_id = message_id

    async def __aenter__(self) -> Claim:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and not self.duplicate:
            self._inbox._remember(self._worker, self._message_id, self.kept)


class PostgresClaims:
    """Claims as rows of `fleet_inbox`, each in a transaction of its own.

    Args:
        pool: an asyncpg pool on a database where SCHEMA (and, for claims with
            a note, the timeline's) has run.
        worker: the worker whose marks `prune` deletes.
        retention: how long a processed id is remembered; a redelivery older
            than this is processed again.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, worker: str, retention: timedelta = timedelta(days=7)
    ):
        self._pool = pool
        self.worker = worker
        self.retention = retention

    @contextlib.asynccontextmanager
    async def claim(
        self, worker: str, message_id: str, note: EventNote | None = None
    ) -> AsyncIterator[Claim]:
        """Claim a delivery; committed when the block exits normally.

        `note` is the event's line in the saga timeline, written with the claim.
        """
        async with self._pool.acquire() as conn, conn.transaction():
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

    @contextlib.asynccontextmanager
    async def claim_batch(
        self, worker: str, notes: Sequence[EventNote]
    ) -> AsyncIterator[BatchClaim]:
        """Claim a batch's messages in one transaction, shared with the handler's
        writes (`claim.db`); committed when the block exits normally."""
        unique = _unique(notes)
        ids = [n.message_id for n in unique]
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _CLAIM_BATCH,
                worker,
                ids,
                [n.correlation_id for n in unique],
                [n.causation_id for n in unique],
                [n.type for n in unique],
            )
            claimed = {row[0] for row in rows}
            seen = [i for i in ids if i not in claimed]
            replay: list[Outgoing] = []
            if seen:
                for row in await conn.fetch(_STORED_BATCH, worker, seen):
                    replay += unpack(row[0])
            claim = BatchClaim([i for i in ids if i in claimed], replay, db=conn)
            yield claim
            if claim.kept and claim.fresh:
                await conn.execute(_KEEP, worker, claim.fresh[0], pack(claim.kept))

    async def prune(self) -> int:
        """Delete this worker's marks older than the retention; returns how many."""
        total = 0
        while True:
            status = await self._pool.execute(_PRUNE, self.worker, self.retention)
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < PRUNE_BATCH:
                return total
