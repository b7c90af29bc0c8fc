"""The transactional outbox against the real PostgreSQL and RabbitMQ: what a producer
records is published if and only if its transaction commits, in commit order per key,
confirmed, and what the broker cannot route is parked with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import psycopg
import pytest
from click.testing import CliRunner, Result
from prometheus_client import REGISTRY

from tests.conftest import Broker
from tests.fixtures.outbox_sink import Tick
from topology import loads
from topology.apply import apply
from workers.cli import cli
from workers.outbox import Outbox, OutboxError, install
from workers.outbox.relay import Relay
from workers.runtime import headers as h
from workers.testing import Tap, eventually, tap

TOPOLOGY = """
exchanges:
  ticks: {}
queues:
  sink:
    type: quorum
    bind: [{exchange: ticks, routing_key: tick.made}]
outbox:
  publishes: {ticks: [Tick]}
"""

outbox = Outbox(exchange="ticks", app_id="test-shop")


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database)
    await install(connection)
    yield connection
    await connection.close()


@pytest.fixture
async def exchange(broker: Broker) -> str:
    await apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url)
    return "ticks"


@contextlib.asynccontextmanager
async def relaying(database: str, url: str, **options: Any) -> AsyncIterator[Relay]:
    """A relay running in this process until the block ends."""
    options.setdefault("poll", 0.5)
    options.setdefault("gauge_every", None)
    relay = Relay(database, url, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(relay.leading.is_set, what="the relay holds the lock", timeout=15)
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def sleeping_relay(database: str, broker: Broker, exchange: str) -> AsyncIterator[Tap]:
    """A tap on `exchange` and a relay whose poll (120 s) never comes in a test, idle
    and asleep: what reaches the tap inside the block was woken for."""
    async with (
        tap(broker.amqp_url, exchange) as seen,
        relaying(database, broker.amqp_url, poll=120) as relay,
    ):
        await eventually(lambda: relay.stats.batches == 0, what="an idle relay")
        await asyncio.sleep(0.3)  # it has fetched nothing and sleeps until woken
        yield seen


async def commit(db: asyncpg.Connection, *events: Tick, **options: Any) -> None:
    async with outbox.transaction(db):
        for event in events:
            await outbox.add(db, event, **options)


async def invoke(*args: str) -> Result:
    """Run a fleet command (it runs its own event loop: in a thread)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def ticks(seen: Tap) -> list[tuple[str, int]]:
    return [(m.json()["key"], m.json()["seq"]) for m in seen.received]


class TestProducer:
    async def test_an_event_is_published_when_its_transaction_commits_and_never_otherwise(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        """An open transaction's event waits; a rolled-back one never goes; a later
        commit's event arrives, so the relay had its chance at the others."""
        async with tap(broker.amqp_url, exchange) as seen, relaying(database, broker.amqp_url):
            pending = await asyncpg.connect(database)
            try:
                open_transaction = pending.transaction()
                await open_transaction.start()
                await outbox.add(pending, Tick(key="a", seq=1), key="a")
                with contextlib.suppress(RuntimeError):
                    async with db.transaction():
                        await outbox.add(db, Tick(key="b", seq=1), key="b")
                        raise RuntimeError("the producer's own write failed")
                await commit(db, Tick(key="c", seq=1), key="c")
                await seen.next(Tick)
                assert ticks(seen) == [("c", 1)]
                await open_transaction.commit()
            finally:
                await pending.close()
            await seen.next(Tick)
            assert ticks(seen) == [("c", 1), ("a", 1)]
            await commit(db, Tick(key="d", seq=1), key="d")
            await seen.next(Tick)
            assert ("b", 1) not in ticks(seen)

    async def test_the_message_is_in_fleets_wire_format_with_the_producers_ids(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        connection = await aio_pika.connect(broker.amqp_url)
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, "tick.made")
        await commit(
            db,
            Tick(key="k", seq=7),
            message_id="m-7",
            correlation_id="order-7",
            causation_id="request-7",
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )
        try:
            async with relaying(database, broker.amqp_url):
                message = await eventually(
                    lambda: queue.get(fail=False), what="the tick", timeout=15
                )
        finally:
            await connection.close()
        assert message.body == b'{"key":"k","seq":7}'
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert (message.type, message.message_id) == ("Tick", "m-7")
        assert message.correlation_id == "order-7"
        assert message.app_id == "test-shop"
        assert message.routing_key == "tick.made"
        assert message.headers[h.VERSION] == 1
        assert message.headers[h.CAUSATION_ID] == "request-7"
        assert message.headers[h.TIMESTAMP_MS] > 0
        assert message.headers["traceparent"].startswith("00-0af7")
        assert await db.fetchval("SELECT count(*) FROM fleet_outbox") == 0  # sent rows move
        row = await db.fetchrow("SELECT * FROM fleet_outbox_sent WHERE message_id = 'm-7'")
        assert row["key"] == "order-7"  # the key defaults to the saga
        assert row["exchange"] == exchange
        assert row["sent_at"] is not None

    async def test_the_key_defaults_to_the_correlation_id(self, db: asyncpg.Connection) -> None:
        await commit(db, Tick(key="x", seq=1), correlation_id="saga-1")
        assert await db.fetchval("SELECT key FROM fleet_outbox") == "saga-1"

    async def test_adding_outside_a_transaction_is_refused(self, db: asyncpg.Connection) -> None:
        with pytest.raises(OutboxError, match="outside a transaction"):
            await outbox.add(db, Tick(key="k", seq=1))
        assert await db.fetchval("SELECT count(*) FROM fleet_outbox") == 0

    async def test_only_contracts_are_recorded(self, db: asyncpg.Connection) -> None:
        async with db.transaction():
            with pytest.raises(OutboxError, match="records Event contracts"):
                await outbox.add(db, {"key": "k"})  # type: ignore[arg-type]

    async def test_a_second_transaction_on_a_key_waits_and_is_published_after_the_first(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        """The key's lock: the second transaction's id is drawn after the first commits,
        although it began adding while the first was still open."""
        second = await asyncpg.connect(database)
        try:
            first = db.transaction()
            await first.start()
            await outbox.add(db, Tick(key="k", seq=1), key="k")
            waiting = asyncio.create_task(commit(second, Tick(key="k", seq=2), key="k"))

            async def blocked() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
                    )
                )

            await eventually(blocked, what="the second producer waits on the key's lock")
            assert not waiting.done()
            await first.commit()
            await asyncio.wait_for(waiting, 10)
        finally:
            await second.close()
        rows = await db.fetch("SELECT id, body FROM fleet_outbox ORDER BY id")
        assert [r["body"] for r in rows] == [b'{"key":"k","seq":1}', b'{"key":"k","seq":2}']
        async with tap(broker.amqp_url, exchange) as seen, relaying(database, broker.amqp_url):
            await seen.next(Tick)
            await seen.next(Tick)
        assert ticks(seen) == [("k", 1), ("k", 2)]

    async def test_add_many_records_several_events_in_one_round_trip(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        events = [Tick(key=k, seq=i) for i in range(5) for k in ("b", "a")]
        async with db.transaction():
            added = await outbox.add_many(db, events[:0])
            assert added == []
            for key in ("a", "b"):
                await outbox.add_many(db, [e for e in events if e.key == key], key=key)
        async with tap(broker.amqp_url, exchange) as seen, relaying(database, broker.amqp_url):
            for _ in events:
                await seen.next(Tick)
        for key in ("a", "b"):
            assert [seq for k, seq in ticks(seen) if k == key] == list(range(5))


class TestExecute:
    """`Outbox.execute`: the producer's own statement and the event's row, one statement."""

    @pytest.fixture(autouse=True)
    async def _orders(self, db: asyncpg.Connection) -> None:
        await db.execute(ORDERS)

    async def test_the_write_and_the_event_commit_together_or_not_at_all(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        async with outbox.transaction(db):
            await outbox.execute(
                db, INSERT_ORDER, "o-1", 100, event=Tick(key="o-1", seq=1), key="o-1"
            )
        with contextlib.suppress(RuntimeError):
            async with db.transaction():
                await outbox.execute(db, INSERT_ORDER, "o-2", 200, event=Tick(key="o-2", seq=1))
                raise RuntimeError("the producer's transaction fails later")
        # Outside a transaction the statement is one: its failure leaves no row.
        with pytest.raises(asyncpg.UniqueViolationError):
            await outbox.execute(db, INSERT_ORDER, "o-1", 300, event=Tick(key="o-1", seq=2))
        assert await db.fetch("SELECT id, total FROM test_orders") == [("o-1", 100)]
        rows = await db.fetch("SELECT key, body FROM fleet_outbox ORDER BY id")
        assert [tuple(r) for r in rows] == [("o-1", b'{"key":"o-1","seq":1}')]
        async with tap(broker.amqp_url, exchange) as seen, relaying(database, broker.amqp_url):
            await seen.next(Tick)
        assert ticks(seen) == [("o-1", 1)]

    async def test_outside_a_transaction_it_commits_and_wakes_the_relay(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        async with sleeping_relay(database, broker, exchange) as seen:
            message = await outbox.execute(
                db, INSERT_ORDER, "o-9", 900, event=Tick(key="o-9", seq=1), message_id="m-9"
            )
            assert await seen.next(Tick, timeout=10) == Tick(key="o-9", seq=1)
        assert message.message_id == seen.received[0].message_id == "m-9"
        assert await db.fetchval("SELECT total FROM test_orders WHERE id = 'o-9'") == 900

    async def test_a_statement_with_its_own_with_clause_and_an_update(
        self, db: asyncpg.Connection
    ) -> None:
        await db.execute("INSERT INTO test_orders VALUES ('o-3', 1)")
        async with db.transaction():
            await outbox.execute(
                db,
                "with recursive n(i) as (select 1 union all select i + 1 from n where i < $2) "
                "UPDATE test_orders SET total = (SELECT sum(i) FROM n) WHERE id = $1;",
                "o-3",
                4,
                event=Tick(key="o-3", seq=2),
            )
            await outbox.execute(
                db, "DELETE FROM test_orders WHERE id = $1", "nobody", event=Tick(key="x", seq=1)
            )
        assert await db.fetchval("SELECT total FROM test_orders WHERE id = 'o-3'") == 10
        assert await db.fetchval("SELECT count(*) FROM fleet_outbox") == 2

    def test_execute_sync_through_psycopg(self, database: str, db: asyncpg.Connection) -> None:
        with psycopg.connect(database) as connection:
            with connection.transaction():
                outbox.execute_sync(
                    connection.cursor(),
                    "INSERT INTO test_orders (id, total) VALUES (%s, %s)",
                    ("p-1", 5),
                    event=Tick(key="p-1", seq=1),
                    message_id="sync-x",
                )
            with contextlib.suppress(RuntimeError), connection.transaction():
                outbox.execute_sync(
                    connection,
                    "INSERT INTO test_orders (id, total) VALUES (%s, %s)",
                    ("p-2", 6),
                    event=Tick(key="p-2", seq=1),
                )
                raise RuntimeError("rolled back")
            assert connection.execute("SELECT id, total FROM test_orders").fetchall() == [
                ("p-1", 5)
            ]
            assert connection.execute("SELECT message_id FROM fleet_outbox").fetchall() == [
                ("sync-x",)
            ]


ORDERS = "CREATE TABLE IF NOT EXISTS test_orders (id text PRIMARY KEY, total bigint NOT NULL)"
INSERT_ORDER = "INSERT INTO test_orders (id, total) VALUES ($1, $2)"


class TestPsycopg:
    def test_add_sync_records_in_the_callers_transaction(
        self, broker: Broker, database: str, exchange: str
    ) -> None:
        with psycopg.connect(database) as connection:
            with connection.transaction():
                outbox.add_sync(connection, Tick(key="p", seq=1), message_id="sync-1")
            with contextlib.suppress(RuntimeError), connection.transaction():
                outbox.add_sync(connection.cursor(), Tick(key="p", seq=2), message_id="sync-2")
                raise RuntimeError("rolled back")
            rows = connection.execute(
                "SELECT message_id, key, headers, body FROM fleet_outbox ORDER BY id"
            ).fetchall()
        assert [r[0] for r in rows] == ["sync-1"]
        assert rows[0][3] == b'{"key":"p","seq":1}'

        async def relayed() -> list[tuple[str, int]]:
            async with tap(broker.amqp_url, exchange) as seen, relaying(database, broker.amqp_url):
                await seen.next(Tick)
            return ticks(seen)

        assert asyncio.run(relayed()) == [("p", 1)]

    def test_wake_sync_after_the_commit_wakes_a_sleeping_relay(
        self, broker: Broker, database: str, exchange: str
    ) -> None:
        """As Django's `transaction.on_commit` would call it: after the commit."""

        async def woken() -> list[tuple[str, int]]:
            async with sleeping_relay(database, broker, exchange) as seen:
                await asyncio.to_thread(commit_and_wake)
                await seen.next(Tick, timeout=10)
            return ticks(seen)

        def commit_and_wake() -> None:
            with psycopg.connect(database) as connection:
                with connection.transaction():
                    outbox.add_sync(connection, Tick(key="p", seq=1))
                outbox.wake_sync(connection)
                connection.commit()

        assert asyncio.run(woken()) == [("p", 1)]

    def test_autocommit_is_refused(self, database: str) -> None:
        with (
            psycopg.connect(database, autocommit=True) as connection,
            pytest.raises(OutboxError, match="autocommit"),
        ):
            outbox.add_sync(connection, Tick(key="p", seq=1))

    @pytest.fixture(autouse=True)
    def _table(self, database: str) -> None:
        with psycopg.connect(database) as connection:
            connection.execute(CliRunner().invoke(cli, ["outbox", "schema"]).output)


class TestRelay:
    async def test_an_unroutable_event_is_parked_with_its_reason_and_given_back_later(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        """Returned by the broker (no queue bound for its key): parked, shown by
        `fleet outbox status` (exit 1), published after `fleet outbox requeue`."""
        await commit(db, Tick(key="k", seq=1), routing_key="tick.unbound", message_id="lost-1")
        await commit(db, Tick(key="k", seq=2), message_id="routed-2")
        async with relaying(database, broker.amqp_url) as relay:
            await eventually(lambda: relay.stats.parked == 1, what="the row parked")
            await eventually(lambda: relay.stats.published == 1, what="the routable one sent")
            status = await invoke("outbox", "status", "--database-url", database)
            assert status.exit_code == 1, status.output
            assert "1 parked" in status.output
            assert "nothing is bound to exchange 'ticks'" in status.output
            assert "tick.unbound" in status.output
            as_json = await invoke("outbox", "status", "--json", "--database-url", database)
            assert '"relay": "pid' in as_json.output
            connection = await aio_pika.connect(broker.amqp_url)
            try:
                channel = await connection.channel()
                queue = await channel.declare_queue("unbound", exclusive=True)
                await queue.bind(exchange, "tick.unbound")
                row_id = await db.fetchval(
                    "SELECT id FROM fleet_outbox WHERE parked_at IS NOT NULL"
                )
                requeued = await invoke(
                    "outbox", "requeue", str(row_id), "--database-url", database
                )
                assert "1 parked row(s) given back" in requeued.output  # and woken
                message = await eventually(
                    lambda: queue.get(fail=False), what="the requeued row", timeout=15
                )
                assert message.message_id == "lost-1"
            finally:
                await connection.close()
        status = await invoke("outbox", "status", "--database-url", database)
        assert status.exit_code == 0, status.output

    async def test_a_missing_exchange_parks_its_rows_and_the_others_go_on(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        async with tap(broker.amqp_url, exchange) as seen:
            await commit(db, Tick(key="a", seq=1), exchange="no-such-exchange")
            await commit(db, Tick(key="b", seq=1))
            async with relaying(database, broker.amqp_url) as relay:
                await seen.next(Tick)
                await eventually(lambda: relay.stats.parked == 1, what="the row parked")
        reason = await db.fetchval("SELECT reason FROM fleet_outbox WHERE parked_at IS NOT NULL")
        assert "no exchange 'no-such-exchange'" in reason
        assert ticks(seen) == [("b", 1)]

    async def test_a_commit_wakes_the_relay_long_before_its_poll(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        """`outbox.transaction` wakes the relay after its commit (and not before)."""
        async with sleeping_relay(database, broker, exchange) as seen:
            await commit(db, Tick(key="k", seq=1))
            await seen.next(Tick, timeout=10)

    async def test_wakeups_from_the_outboxs_own_connection_wake_the_relay(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        """Inside `waking`, `transaction` only asks; the outbox's connection sends the
        NOTIFY, and every commit of a burst is published long before the poll."""
        own = Outbox(exchange="ticks")
        async with (
            tap(broker.amqp_url, exchange) as seen,
            relaying(database, broker.amqp_url, poll=120),
            own.waking(database),
        ):
            await asyncio.sleep(0.3)  # the relay has fetched nothing and sleeps
            for seq in range(1, 6):
                async with own.transaction(db):
                    await own.add(db, Tick(key="k", seq=seq), key="k")
            for _ in range(5):
                await seen.next(Tick, timeout=10)
            assert own.wakeups.in_background
            assert 1 <= own.wakeups.sent <= 5
        assert ticks(seen) == [("k", seq) for seq in range(1, 6)]

    async def test_a_commit_nobody_wakes_for_is_published_at_the_next_poll(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        async with (
            tap(broker.amqp_url, exchange) as seen,
            relaying(database, broker.amqp_url, poll=1.0) as relay,
        ):
            await eventually(lambda: relay.stats.batches == 0, what="an idle relay")
            await asyncio.sleep(0.3)
            async with db.transaction():  # the producer's own transaction, no wake()
                await outbox.add(db, Tick(key="k", seq=1))
            await seen.next(Tick, timeout=10)
        assert ticks(seen) == [("k", 1)]

    async def test_wake_inside_a_transaction_is_refused(self, db: asyncpg.Connection) -> None:
        """It would commit the producer's transaction halfway."""
        async with db.transaction():
            await outbox.add(db, Tick(key="k", seq=1))
            with pytest.raises(OutboxError, match="after the commit"):
                await outbox.wake(db)
            assert db.is_in_transaction()

    async def test_a_rolled_back_outbox_transaction_records_nothing(
        self, db: asyncpg.Connection
    ) -> None:
        with contextlib.suppress(RuntimeError):
            async with outbox.transaction(db):
                await outbox.add(db, Tick(key="k", seq=1))
                raise RuntimeError("the shop's own write failed")
        assert await db.fetchval("SELECT count(*) FROM fleet_outbox") == 0

    async def test_sent_rows_are_pruned_after_the_retention(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        await commit(db, Tick(key="k", seq=1))
        async with relaying(
            database, broker.amqp_url, retention=timedelta(milliseconds=1), prune_every=0.05
        ) as relay:
            await eventually(lambda: relay.stats.published == 1, what="the row sent")
            await commit(db, Tick(key="k", seq=2))  # wakes it up to prune

            async def pruned() -> bool:
                return (
                    relay.stats.published == 2
                    and await db.fetchval(
                        "SELECT (SELECT count(*) FROM fleet_outbox)"
                        " + (SELECT count(*) FROM fleet_outbox_sent)"
                    )
                    == 0
                )

            await eventually(pruned, what="the sent rows pruned")

    async def test_a_standby_relay_takes_over_when_the_active_one_stops(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str
    ) -> None:
        async with tap(broker.amqp_url, exchange) as seen:
            first_stop, second_stop = asyncio.Event(), asyncio.Event()
            first = Relay(database, broker.amqp_url, poll=0.2, gauge_every=None)
            second = Relay(database, broker.amqp_url, poll=0.2, gauge_every=None)
            first_task = asyncio.create_task(first.run(first_stop))
            await eventually(first.leading.is_set, what="the first relay active")
            second_task = asyncio.create_task(second.run(second_stop))
            await asyncio.sleep(0.5)
            assert not second.leading.is_set()
            await commit(db, Tick(key="k", seq=1))
            await seen.next(Tick)
            first_stop.set()
            await first_task
            await eventually(second.leading.is_set, what="the standby active")
            await commit(db, Tick(key="k", seq=2))
            await seen.next(Tick)
            second_stop.set()
            await second_task
        assert (first.stats.published, second.stats.published) == (1, 1)
        assert ticks(seen) == [("k", 1), ("k", 2)]

    async def test_while_the_broker_is_unreachable_the_database_is_left_alone(
        self, database: str, db: asyncpg.Connection
    ) -> None:
        """The relay backs off on the broker side; its PostgreSQL session stays idle
        (its last query does not change) while rows wait and the gauges say so."""
        for seq in range(3):
            await commit(db, Tick(key="k", seq=seq))
        relay = Relay(database, "amqp://guest:guest@127.0.0.1:1/", poll=0.1, gauge_every=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            await eventually(relay.leading.is_set, what="the relay holds the lock")

            async def last_query() -> Any:
                return await db.fetchval(
                    "SELECT query_start FROM pg_stat_activity "
                    "WHERE application_name = 'fleet outbox relay default' AND "
                    "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                )

            before = await last_query()
            await asyncio.sleep(2)
            assert await last_query() == before

            def gauge(name: str) -> float | None:
                return REGISTRY.get_sample_value(name, {"outbox": "default"})

            await eventually(
                lambda: gauge("fleet_outbox_depth") == 3, what="the depth gauge reads 3"
            )
            oldest = gauge("fleet_outbox_oldest_unsent_seconds")
            assert oldest is not None
            assert oldest > 0
            assert gauge("fleet_outbox_relay_active") == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


class TestTopology:
    async def test_fleet_status_shows_the_outbox_when_the_topology_declares_one(
        self, broker: Broker, database: str, db: asyncpg.Connection, exchange: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        path = tmp_path / "fleet.yaml"
        path.write_text(TOPOLOGY)
        await commit(db, Tick(key="k", seq=1))
        monkeypatch.setenv("FLEET_DATABASE_URL", database)
        result = await invoke(
            "status", "--file", str(path), "--url", broker.amqp_url,
            "--management-url", broker.management_url,
        )  # fmt: skip
        assert "outbox default: 1 unsent" in result.output, result.output


def fleet_up(*args: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str]]:
    """`fleet up ARGS` as a subprocess, its log lines collected as they come."""
    up = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "--log-format", "json", "up", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    lines: list[str] = []

    def read() -> None:
        assert up.stderr is not None
        lines.extend(line.rstrip() for line in up.stderr)

    threading.Thread(target=read, daemon=True).start()
    return up, lines


class TestFleetUp:
    async def test_fleet_up_runs_the_relay_of_the_topologys_outbox(
        self, broker: Broker, database: str, db: asyncpg.Connection, tmp_path: Path
    ) -> None:
        path = tmp_path / "fleet.yaml"
        path.write_text(TOPOLOGY)
        up, lines = fleet_up(
            "--only", "outbox", "--file", str(path), "--url", broker.amqp_url,
            "--metrics-port", "0", env={"FLEET_DATABASE_URL": database},
        )  # fmt: skip
        try:
            await eventually(
                lambda: any('"outbox.ready"' in line for line in lines),
                what="fleet up's relay ready",
                timeout=60,
            )
            async with tap(broker.amqp_url, "ticks") as seen:
                await commit(db, Tick(key="k", seq=1))
                await seen.next(Tick, timeout=30)
        finally:
            up.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(up.wait, 60)
        assert code == 0, "\n".join(lines[-20:])
