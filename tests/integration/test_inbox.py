"""The PostgreSQL inbox against a real database: claims, duplicates, rollback,
the stored follow-ons, crash counting and retention."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from workers.runtime.inbox import WARM_CONNECTIONS, EventNote, MemoryInbox, PostgresInbox
from workers.runtime.outgoing import Outgoing


def outgoing(message_id: str) -> Outgoing:
    return Outgoing(
        exchange="e",
        routing_key="a.b",
        body=b"{}",
        message_id=message_id,
        correlation_id="c",
        causation_id="m",
        type="T",
        version=1,
        mandatory=True,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture(params=[1, 16, "auto"], ids=["alone", "group-commit", "auto"])
async def inbox(database: str, request: pytest.FixtureRequest):
    """Every test runs with a transaction per claim, with grouped commits, and with
    `auto` (grouped until a handler writes)."""
    inbox = PostgresInbox(
        database,
        worker="w",
        retention=timedelta(days=1),
        pool_size=4,
        commit_batch=request.param,
        prune_every=None,  # tests prune when they mean to, never in the background
    )
    await inbox.start()
    async with inbox.pool.acquire() as conn:
        await conn.execute("CREATE TABLE effects (id text)")
    yield inbox
    await inbox.close()


class TestPostgresInbox:
    async def test_a_message_is_claimed_once_and_its_follow_ons_are_kept(self, inbox) -> None:
        """The second claim of a committed message is a duplicate carrying the stored follow-ons."""
        async with inbox.claim("w", "m-1") as claim:
            assert not claim.duplicate
            await claim.db.execute("INSERT INTO effects VALUES ('m-1')")
            claim.keep([outgoing("f-1")])
        async with inbox.claim("w", "m-1") as again:
            assert again.duplicate
            assert [o.message_id for o in again.replay] == ["f-1"]
        assert await inbox.pool.fetchval("SELECT count(*) FROM effects") == 1

    async def test_a_failed_handler_rolls_back_its_writes_and_its_mark(self, inbox) -> None:
        """An exception inside the claim undoes the handler's writes; the next claim is fresh."""

        async def failing_handler() -> None:
            async with inbox.claim("w", "m-2") as claim:
                await claim.db.execute("INSERT INTO effects VALUES ('m-2')")
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError):
            await failing_handler()
        async with inbox.claim("w", "m-2") as retry:
            assert not retry.duplicate
        assert await inbox.pool.fetchval("SELECT count(*) FROM effects") == 0

    async def test_concurrent_duplicates_wait_for_the_first_and_then_skip(self, inbox) -> None:
        """Two deliveries of one message at once: one applies the effect, the other sees it."""

        async def deliver() -> bool:
            async with inbox.claim("w", "m-3") as claim:
                if claim.duplicate:
                    return False
                await claim.db.execute("INSERT INTO effects VALUES ('m-3')")
                await asyncio.sleep(0.2)  # hold the row lock while the other one arrives
                return True

        results = await asyncio.gather(deliver(), deliver())
        assert sorted(results) == [False, True]
        assert await inbox.pool.fetchval("SELECT count(*) FROM effects") == 1

    async def test_the_timeline_line_commits_with_the_claim_and_names_the_follow_ons(
        self, inbox
    ) -> None:
        """A processed event is logged with what it emitted; a failed one leaves no line."""
        note = EventNote("saga-1", "m-7", "m-0", "OrderPlaced", "w", "processed", [])
        async with inbox.claim("w", "m-7", note) as claim:
            claim.keep([outgoing("f-7")])

        async def failing() -> None:
            async with inbox.claim("w", "m-8", note._replace(message_id="m-8")):
                raise RuntimeError("handler failed")

        with pytest.raises(RuntimeError):
            await failing()
        rows = await inbox.pool.fetch(
            "SELECT message_id, causation_id, outcome, emitted "
            "FROM fleet_events WHERE correlation_id = 'saga-1'"
        )
        assert [tuple(r) for r in rows] == [("m-7", "m-0", "processed", ["T"])]

    async def test_workers_have_separate_marks(self, inbox) -> None:
        """The same message id is new to a different worker."""
        async with inbox.claim("w", "m-4"):
            pass
        async with inbox.claim("other", "m-4") as claim:
            assert not claim.duplicate

    async def test_starts_are_counted_per_message_and_survive_the_claim(self, inbox) -> None:
        """The crash counter goes up on each start, committed outside any claim."""
        assert [await inbox.started("w", "m-5") for _ in range(3)] == [1, 2, 3]
        assert await inbox.started("w", "m-6") == 1

    async def test_marks_older_than_the_retention_are_pruned(self, inbox) -> None:
        """Pruning deletes old marks of this worker only."""
        for message_id in ("old", "new"):
            async with inbox.claim("w", message_id):
                pass
        async with inbox.claim("other", "old"):
            pass
        await inbox.pool.execute(
            "UPDATE fleet_inbox SET processed_at = now() - interval '2 days'"
            " WHERE message_id = 'old'"
        )
        assert await inbox.prune() == 1
        remaining = await inbox.pool.fetch(
            "SELECT worker, message_id FROM fleet_inbox ORDER BY worker, message_id"
        )
        assert [tuple(r) for r in remaining] == [("other", "old"), ("w", "new")]

    async def test_two_inboxes_starting_together_create_the_schema_once(self, database) -> None:
        """Workers starting at the same moment do not race on CREATE TABLE."""
        inboxes = [PostgresInbox(database, worker=f"w{i}") for i in range(4)]
        await asyncio.gather(*(i.start() for i in inboxes))
        await asyncio.gather(*(i.close() for i in inboxes))
        connection = await asyncpg.connect(database)
        try:
            assert await connection.fetchval("SELECT to_regclass('fleet_inbox')::text") == (
                "fleet_inbox"
            )
        finally:
            await connection.close()


class TestGroupCommit:
    """Claims arriving together share one transaction; each handler's effects stay its own."""

    @pytest.fixture
    async def grouped(self, database: str):
        inbox = PostgresInbox(database, worker="w", pool_size=4, commit_batch=64)
        await inbox.start()
        await inbox.pool.execute("CREATE TABLE effects (id text PRIMARY KEY)")
        yield inbox
        await inbox.close()

    async def test_a_burst_commits_together_and_a_failure_is_undone_alone(self, grouped) -> None:
        """40 handlers at once, every 10th fails after writing: the 36 others' effects,
        marks and follow-ons commit; the failed ones leave nothing and can claim again."""

        async def handle(i: int) -> None:
            async with grouped.claim("w", f"m-{i}") as claim:
                assert not claim.duplicate
                await claim.db.execute("INSERT INTO effects VALUES ($1)", f"m-{i}")
                if i % 10 == 0:
                    raise RuntimeError("handler failed")
                claim.keep([outgoing(f"f-{i}")])

        results = await asyncio.gather(*(handle(i) for i in range(40)), return_exceptions=True)
        failed = {i for i, r in enumerate(results) if isinstance(r, RuntimeError)}
        assert failed == {0, 10, 20, 30}
        effects = {r["id"] for r in await grouped.pool.fetch("SELECT id FROM effects")}
        assert effects == {f"m-{i}" for i in range(40) if i not in failed}
        marks = await grouped.pool.fetchval("SELECT count(*) FROM fleet_inbox")
        assert marks == 36
        async with grouped.claim("w", "m-10") as retry:
            assert not retry.duplicate
        async with grouped.claim("w", "m-11") as again:
            assert again.duplicate
            assert [o.message_id for o in again.replay] == ["f-11"]

    async def test_a_member_leaves_only_after_the_commit(self, grouped) -> None:
        """When a handler's block exits, its effect is visible to another connection."""

        async def handle(i: int) -> bool:
            async with grouped.claim("w", f"v-{i}") as claim:
                await claim.db.execute("INSERT INTO effects VALUES ($1)", f"v-{i}")
                await asyncio.sleep(0.01 * i)  # the batch waits for the slowest
            seen = await grouped.pool.fetchval(
                "SELECT count(*) FROM effects WHERE id = $1", f"v-{i}"
            )
            return bool(seen)

        assert await asyncio.gather(*(handle(i) for i in range(5))) == [True] * 5

    async def test_a_handler_without_queries_holds_no_lock_and_nested_transactions_work(
        self, grouped
    ) -> None:
        async def quiet(i: int) -> None:
            async with grouped.claim("w", f"q-{i}"):
                await asyncio.sleep(0.05)

        async def nested() -> None:
            async with grouped.claim("w", "n-1") as claim:
                async with claim.db.transaction():
                    await claim.db.execute("INSERT INTO effects VALUES ('n-1')")
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with claim.db.transaction():
                        await claim.db.execute("INSERT INTO effects VALUES ('n-1')")

        await asyncio.gather(*(quiet(i) for i in range(10)), nested())
        assert await grouped.pool.fetchval("SELECT count(*) FROM fleet_inbox") == 11
        assert await grouped.pool.fetchval("SELECT count(*) FROM effects") == 1

    async def test_a_batch_that_cannot_begin_fails_alone_and_the_next_one_recovers(
        self, grouped, database: str
    ) -> None:
        """While PostgreSQL refuses the inbox (its connection killed, new ones not
        allowed), a batch fails its members (their deliveries are retried); once
        it accepts again, the next deliveries form a new batch on a new connection."""
        async with grouped.claim("w", "before"):
            pass
        server, name = database.rsplit("/", 1)
        admin = await asyncpg.connect(f"{server}/postgres")
        try:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            # asyncpg's error depends on when it notices: at BEGIN, or at reconnecting.
            with pytest.raises(Exception):  # noqa: B017, PT011
                async with grouped.claim("w", "lost"):
                    pass
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        finally:
            await admin.close()
        # Each pooled connection PostgreSQL dropped fails one batch when it is
        # used (asyncpg notices then); every later batch gets a new connection.
        failures = 0
        for _ in range(grouped.pool_size + 1):
            try:
                async with grouped.claim("w", "after") as claim:
                    assert not claim.duplicate
                break
            except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError):
                failures += 1
        else:
            pytest.fail("the inbox did not recover")
        assert failures <= WARM_CONNECTIONS
        async with grouped.claim("w", "lost") as retried:
            assert not retried.duplicate
        marks = await grouped.pool.fetch("SELECT message_id FROM fleet_inbox ORDER BY 1")
        assert [r["message_id"] for r in marks] == ["after", "before", "lost"]

    async def test_a_failed_statement_rolls_back_to_the_handlers_savepoint(self, grouped) -> None:
        """A handler whose query fails does not poison the batch's transaction."""

        async def bad() -> None:
            async with grouped.claim("w", "b-1") as claim:
                await claim.db.execute("INSERT INTO effects VALUES ('b-1')")
                await claim.db.execute("INSERT INTO no_such_table VALUES (1)")

        async def good() -> None:
            async with grouped.claim("w", "g-1") as claim:
                await claim.db.execute("INSERT INTO effects VALUES ('g-1')")

        results = await asyncio.gather(bad(), good(), return_exceptions=True)
        assert isinstance(results[0], asyncpg.UndefinedTableError)
        assert results[1] is None
        rows = await grouped.pool.fetch("SELECT id FROM effects")
        assert [r["id"] for r in rows] == ["g-1"]


def note(event_type: str, message_id: str) -> EventNote:
    return EventNote("saga", message_id, None, event_type, "w", "processed", [])


class TestAutoCommit:
    """`commit_batch: auto`: handlers that do not write share batches; a handler
    that writes through ctx.db gets a transaction per delivery from then on."""

    tags = itertools.count()

    @pytest.fixture
    async def auto(self, database: str):
        inbox = PostgresInbox(database, worker="w", pool_size=4)
        assert inbox.commit_batch == "auto"  # the default
        await inbox.start()
        await inbox.pool.execute("CREATE TABLE effects (id text PRIMARY KEY)")
        yield inbox
        await inbox.close()

    async def shares_a_batch_with_a_slow_dedupe_only_handler(
        self, auto: PostgresInbox, event_type: str, *, write: bool
    ) -> bool:
        """Whether a claim of `event_type` made together with a slow claim of a
        handler that never writes has to wait for that one to finish."""
        inside, release, left = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tag = f"{event_type}-{next(self.tags)}"

        async def quick() -> None:
            async with auto.claim("w", f"quick-{tag}", note(event_type, f"quick-{tag}")) as claim:
                if write:
                    await claim.db.execute("INSERT INTO effects VALUES ($1)", f"quick-{tag}")
            left.set()

        async def slow() -> None:
            async with auto.claim("w", f"slow-{tag}", note("Quiet", f"slow-{tag}")):
                inside.set()
                await release.wait()

        both = asyncio.gather(quick(), slow())
        await inside.wait()
        await asyncio.sleep(0.3)
        waited = not left.is_set()
        release.set()
        await both
        assert left.is_set()
        return waited

    async def test_handlers_that_do_not_write_share_a_transaction(self, auto) -> None:
        assert await self.shares_a_batch_with_a_slow_dedupe_only_handler(auto, "Quiet", write=False)

    async def test_a_handler_that_wrote_gets_a_transaction_per_delivery(self, auto) -> None:
        # Its first write happens inside a batch (and commits with it)...
        assert await self.shares_a_batch_with_a_slow_dedupe_only_handler(auto, "Writer", write=True)
        # ...after which its deliveries commit on their own, whoever else is running.
        for _ in range(2):
            assert not await self.shares_a_batch_with_a_slow_dedupe_only_handler(
                auto, "Writer", write=True
            )
        rows = await auto.pool.fetch("SELECT id FROM effects ORDER BY id")
        assert len(rows) == 3
        # Other event types keep sharing batches.
        assert await self.shares_a_batch_with_a_slow_dedupe_only_handler(auto, "Other", write=False)


class TestMemoryInbox:
    async def test_it_remembers_recent_ids_and_forgets_the_oldest(self) -> None:
        """Capacity bounds memory: the oldest id is forgotten first."""
        inbox = MemoryInbox(capacity=2)
        for message_id in ("a", "b", "c"):
            async with inbox.claim("w", message_id) as claim:
                claim.keep([outgoing(message_id)])
        async with inbox.claim("w", "c") as claim:
            assert claim.duplicate
            assert claim.replay[0].message_id == "c"
        async with inbox.claim("w", "a") as claim:
            assert not claim.duplicate
        assert await inbox.started("w", "a") is None


def batch_note(message_id: str) -> EventNote:
    return EventNote("c", message_id, None, "T", "w", "processed", [])


class TestPostgresBatchClaims:
    """A batch handler's claim: every id in one transaction with the handler's writes."""

    async def test_seen_ids_are_left_out_and_the_batchs_follow_ons_replayed(self, inbox) -> None:
        async with inbox.claim("w", "m-1"):
            pass
        notes = [batch_note(i) for i in ("m-1", "m-2", "m-2", "m-3")]
        async with inbox.claim_batch("w", notes) as claim:
            # m-1 was processed before; the second m-2 is the same message again
            assert (claim.fresh, claim.replay) == (["m-2", "m-3"], [])
            await claim.db.executemany("INSERT INTO effects VALUES ($1)", [("m-2",), ("m-3",)])
            claim.keep([outgoing("f-1")])
        async with inbox.claim_batch("w", [batch_note("m-2"), batch_note("m-4")]) as again:
            assert again.fresh == ["m-4"]
            assert [o.message_id for o in again.replay] == ["f-1"]
        async with inbox.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM effects") == 2
            rows = await conn.fetch(
                # (m-1's own claim writes its row under group commit only)
                "SELECT message_id FROM fleet_events WHERE worker = 'w' AND message_id <> 'm-1' "
                "ORDER BY message_id"
            )
        assert [r["message_id"] for r in rows] == ["m-2", "m-3", "m-4"]

    async def test_a_batch_that_raised_leaves_no_mark_and_no_write(self, inbox) -> None:
        async def failing() -> None:
            async with inbox.claim_batch("w", [batch_note("m-1"), batch_note("m-2")]) as claim:
                await claim.db.execute("INSERT INTO effects VALUES ('m-1')")
                raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError, match="the handler failed"):
            await failing()
        async with inbox.claim_batch("w", [batch_note("m-1")]) as claim:
            assert claim.fresh == ["m-1"]
        async with inbox.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM effects") == 0
