"""Each store of the inbox on its own, against a real PostgreSQL: its table alone,
what it writes, what it prunes; and the schema step they share.

The facade that puts them together (`PostgresInbox`) is tested in test_inbox.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from types import ModuleType

import asyncpg
import pytest

from workers.runtime import attempts, claims, timeline
from workers.runtime.attempts import PostgresAttempts
from workers.runtime.claims import PRUNE_BATCH, MemoryClaims, PostgresClaims
from workers.runtime.group_commit import GroupCommit
from workers.runtime.inbox import STORES, create_schema
from workers.runtime.timeline import EventNote, PostgresTimeline

FLEET_TABLES = (
    "SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables"
    " WHERE tablename LIKE 'fleet_%'"
)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's empty database."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def tables(pool: asyncpg.Pool, *stores: ModuleType) -> list[str]:
    """Create the stores' tables; the fleet tables the database then has."""
    async with pool.acquire() as conn:
        await create_schema(conn, stores)
        found: list[str] = await conn.fetchval(FLEET_TABLES)
    return found


def note(message_id: str, *, worker: str = "w", outcome: str = "processed") -> EventNote:
    return EventNote("saga-1", message_id, None, "OrderPlaced", worker, outcome, [])


class TestTimeline:
    async def test_it_needs_only_its_own_table(self, pool: asyncpg.Pool) -> None:
        """A note outside any claim is a row of fleet_events, committed at once."""
        # Given
        assert await tables(pool, timeline) == ["fleet_events"]
        store = PostgresTimeline(pool)
        # When
        await store.note(note("m-1", outcome="retried")._replace(detail="Unavailable: 503"))
        # Then
        row = await pool.fetchrow("SELECT message_id, outcome, emitted, detail FROM fleet_events")
        assert tuple(row) == ("m-1", "retried", [], "Unavailable: 503")

    async def test_rows_older_than_the_retention_are_pruned_for_every_worker(
        self, pool: asyncpg.Pool
    ) -> None:
        """The timeline is shared by the fleet: any worker's pruner removes old rows."""
        # Given
        await tables(pool, timeline)
        store = PostgresTimeline(pool, retention=timedelta(days=1))
        for message_id, worker in [("old-a", "a"), ("old-b", "b"), ("new", "a")]:
            await store.note(note(message_id, worker=worker))
        await pool.execute(
            "UPDATE fleet_events SET at = now() - interval '2 days' WHERE message_id LIKE 'old%'"
        )
        # When
        deleted = await store.prune()
        # Then
        assert deleted == 2
        assert await pool.fetchval("SELECT array_agg(message_id) FROM fleet_events") == ["new"]

    def test_a_claim_names_only_columns_it_has(self) -> None:
        """The statements other stores build on it are checked when they are built."""
        assert timeline.insert("worker", "outcome") == "INSERT INTO fleet_events (worker, outcome)"
        with pytest.raises(ValueError, match="fleet_events has no column 'status'"):
            timeline.insert("worker", "status")


class TestAttempts:
    async def test_starts_are_counted_per_worker_and_message(self, pool: asyncpg.Pool) -> None:
        """Each start counts one more, committed at once; other messages and workers
        have counts of their own."""
        # Given
        assert await tables(pool, attempts) == ["fleet_attempts"]
        store = PostgresAttempts(pool, worker="w")
        # When
        counts = [await store.started("w", "m-1") for _ in range(3)]
        # Then
        assert counts == [1, 2, 3]
        assert await store.started("w", "m-2") == 1
        assert await store.started("other", "m-1") == 1

    async def test_counts_not_started_within_the_retention_are_pruned(
        self, pool: asyncpg.Pool
    ) -> None:
        """Only this worker's stale counts go; a recent start keeps its count."""
        # Given
        await tables(pool, attempts)
        store = PostgresAttempts(pool, worker="w", retention=timedelta(days=1))
        for worker, message_id in [("w", "stale"), ("w", "recent"), ("other", "stale")]:
            await store.started(worker, message_id)
        await pool.execute(
            "UPDATE fleet_attempts SET last_at = now() - interval '2 days'"
            " WHERE message_id = 'stale'"
        )
        # When
        deleted = await store.prune()
        # Then
        assert deleted == 1
        rows = await pool.fetch("SELECT worker, message_id FROM fleet_attempts ORDER BY 1, 2")
        assert [tuple(r) for r in rows] == [("other", "stale"), ("w", "recent")]


class TestClaims:
    async def test_claims_without_a_note_need_only_their_own_table(
        self, pool: asyncpg.Pool
    ) -> None:
        """A claim, a duplicate with the kept follow-ons, and a failed claim undone."""
        # Given
        assert await tables(pool, claims) == ["fleet_inbox"]
        await pool.execute("CREATE TABLE effects (id text)")
        store = PostgresClaims(pool, worker="w")
        # When
        async with store.claim("w", "m-1") as claim:
            assert not claim.duplicate
            assert claim.db is not None
            await claim.db.execute("INSERT INTO effects VALUES ('m-1')")
            claim.keep([])

        async def failing_handler() -> None:
            async with store.claim("w", "m-2") as failed:
                assert failed.db is not None
                await failed.db.execute("INSERT INTO effects VALUES ('m-2')")
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError):
            await failing_handler()
        # Then
        async with store.claim("w", "m-1") as again:
            assert again.duplicate
            assert again.db is None
        async with store.claim("w", "m-2") as retried:
            assert not retried.duplicate
        assert await pool.fetchval("SELECT array_agg(id) FROM effects") == ["m-1"]

    async def test_a_claim_with_a_note_writes_its_timeline_row_in_the_same_statement(
        self, pool: asyncpg.Pool
    ) -> None:
        """With the timeline's table beside it, a claim's row names what it emitted;
        a duplicate writes no second row."""
        # Given
        await tables(pool, claims, timeline)
        store = PostgresClaims(pool, worker="w")
        # When
        for _ in range(2):
            async with store.claim("w", "m-1", note("m-1")) as claim:
                claim.keep([])
        # Then
        rows = await pool.fetch("SELECT message_id, outcome FROM fleet_events")
        assert [tuple(r) for r in rows] == [("m-1", "processed")]

    async def test_pruning_goes_on_until_every_old_mark_is_gone(self, pool: asyncpg.Pool) -> None:
        """Marks are deleted a batch at a time, as many batches as it takes."""
        # Given
        await tables(pool, claims)
        await pool.execute(
            "INSERT INTO fleet_inbox (worker, message_id, processed_at)"
            " SELECT 'w', 'old-' || i, now() - interval '2 days' FROM generate_series(0, $1) i",
            PRUNE_BATCH,
        )
        async with PostgresClaims(pool, worker="w").claim("w", "new"):
            pass
        # When
        deleted = await PostgresClaims(pool, worker="w", retention=timedelta(days=1)).prune()
        # Then
        assert deleted == PRUNE_BATCH + 1
        assert await pool.fetchval("SELECT array_agg(message_id) FROM fleet_inbox") == ["new"]

    async def test_group_commit_shares_one_transaction_among_claims_on_their_own(
        self, pool: asyncpg.Pool
    ) -> None:
        """GroupCommit on a pool: claims made together are one batch, each with its
        timeline row, and a duplicate in the same burst is seen as one."""
        # Given
        await tables(pool, claims, timeline)
        group = GroupCommit(pool, max_batch=8)

        async def deliver(message_id: str) -> bool:
            async with group.claim("w", message_id, note(message_id)) as claim:
                return not claim.duplicate

        # When
        fresh = await asyncio.gather(*(deliver(m) for m in ["a", "b", "a", "c"]))
        # Then
        assert fresh == [True, True, False, True]
        rows = await pool.fetch("SELECT message_id FROM fleet_events ORDER BY 1")
        assert [r["message_id"] for r in rows] == ["a", "b", "c"]

    async def test_memory_claims_forget_the_oldest_first(self) -> None:
        """Without a database: recent ids, bounded by the capacity."""
        # Given
        store = MemoryClaims(capacity=2)
        for message_id in ("a", "b", "c"):
            async with store.claim("w", message_id):
                pass
        # Then
        async with store.claim("w", "c") as kept:
            assert kept.duplicate
        async with store.claim("w", "a") as forgotten:
            assert not forgotten.duplicate


class TestSchema:
    async def test_every_store_together_is_what_an_inbox_creates(self, pool: asyncpg.Pool) -> None:
        assert await tables(pool, *STORES) == ["fleet_attempts", "fleet_events", "fleet_inbox"]

    async def test_once_the_tables_exist_starting_takes_no_lock(
        self, pool: asyncpg.Pool, database: str
    ) -> None:
        """Another process holding the schema lock (creating tables, say) does not
        hold up a worker whose tables exist: it checks them in one query and goes on."""
        # Given
        await tables(pool, *STORES)
        other = await asyncpg.connect(database)
        try:
            await other.execute("BEGIN")
            await other.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_inbox'))")
            # When / Then
            async with pool.acquire() as conn:
                await asyncio.wait_for(create_schema(conn, STORES), timeout=5)
        finally:
            await other.close()

    async def test_a_table_missing_from_an_older_database_is_created(
        self, pool: asyncpg.Pool
    ) -> None:
        """A store whose table or index is missing gets it; the others are left as they are."""
        # Given
        await tables(pool, *STORES)
        await pool.execute("DROP INDEX fleet_events_age")
        await pool.execute("DROP TABLE fleet_attempts")
        # When
        found = await tables(pool, *STORES)
        # Then
        assert found == ["fleet_attempts", "fleet_events", "fleet_inbox"]
        assert await pool.fetchval("SELECT to_regclass('fleet_events_age') IS NOT NULL")
