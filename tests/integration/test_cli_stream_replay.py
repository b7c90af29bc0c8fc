"""`fleet stream replay` against a real RabbitMQ, each test in its own vhost: events
read over the stream protocol, published into a queue over AMQP, consumed back."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aio_pika
import asyncpg
import pytest
from click.testing import CliRunner, Result

from tests.conftest import Broker
from tests.fixtures.ledger_worker import SCHEMA
from tests.fixtures.stream_offsets import store_offset, stored_offset
from tests.integration.conftest import ROOT, PikaPublisher, order
from tests.integration.test_metrics import free_port, scrape
from topology import load, loads
from topology.apply import apply
from workers.cli import cli
from workers.streams.connect import StreamEndpoint
from workers.streams.offsets import last_chunk
from workers.testing import WorkerProcess, collect, eventually, queue_depth

TOPOLOGY = """
exchanges: {orders: {type: topic}}
queues:
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
    stream: {max_age: 1d}
  audit: {type: classic}
"""
EVENTS = [
    ("OrderPlaced", "order.placed", "o-1"),
    ("OrderPlaced", "order.placed", "o-2"),
    ("OrderCancelled", "order.cancelled", "o-1"),
    ("OrderPlaced", "order.placed", "o-3"),
    ("OrderCancelled", "order.cancelled", "o-3"),
]
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _publish(url: str, events: list[tuple[str, str, str]], prefix: str = "m") -> None:
    """Each event with fleet's wire properties, confirmed (one channel, in order)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("orders")
        for i, (event_type, key, order_id) in enumerate(events):
            await exchange.publish(
                aio_pika.Message(
                    f'{{"order_id": "{order_id}"}}'.encode(),
                    type=event_type,
                    message_id=f"{prefix}-{i}",
                    correlation_id=f"saga-{order_id}",
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    timestamp=STAMP,
                    app_id="shop",
                    headers={"version": 2, "causation-id": f"cause-{i}", "attempt": 1},
                ),
                routing_key=key,
            )


@pytest.fixture
def events(broker: Broker) -> Broker:
    """The vhost with stream order-events holding the five EVENTS, and an empty queue audit."""
    asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
    asyncio.run(_publish(broker.amqp_url, EVENTS))
    return broker


def fleet(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="fleet")


def replay(broker: Broker, *args: str) -> Result:
    return fleet(
        "stream",
        "replay",
        *args,
        "--url",
        broker.amqp_url,
        "--management-url",
        broker.management_url,
    )


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")


class TestReplay:
    def test_each_event_arrives_with_its_ids_type_headers_and_body(self, events: Broker) -> None:
        result = replay(events, "order-events", "--since", "1h", "--into", "audit")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("replayed 5 events into audit in ")
        assert "replaying order-events into audit" in result.stderr  # the progress label
        received = asyncio.run(collect(events.amqp_url, "audit", 5, seconds=10))
        assert [(r.message_id, r.type, r.json()["order_id"]) for r in received] == [
            (f"m-{i}", t, o) for i, (t, _, o) in enumerate(EVENTS)
        ]
        assert [r.correlation_id for r in received] == [f"saga-{o}" for _, _, o in EVENTS]
        assert [r.headers for r in received] == [
            {"version": 2, "causation-id": f"cause-{i}", "attempt": 1} for i in range(5)
        ]
        assert {r.routing_key for r in received} == {"audit"}  # the default exchange

    def test_the_other_properties_are_kept_too(self, events: Broker) -> None:
        result = replay(events, "order-events", "--since", "1h", "--into", "audit")
        assert result.exit_code == 0, result.output

        async def first() -> aio_pika.abc.AbstractIncomingMessage:
            connection = await aio_pika.connect(events.amqp_url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.get_queue("audit")
                message = await queue.get(timeout=5)
                assert message is not None
                await message.ack()
                return message

        message = asyncio.run(first())
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.timestamp == STAMP
        assert message.app_id == "shop"

    def test_type_keeps_only_that_type_and_counts_the_others(self, events: Broker) -> None:
        result = replay(
            events, "order-events", "--since", "1h", "--type", "OrderCancelled", "--into", "audit"
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(
            "replayed 2 events into audit (skipped 3 of other types) in "
        )
        received = asyncio.run(collect(events.amqp_url, "audit", 2, seconds=10))
        assert [(r.message_id, r.type) for r in received] == [
            ("m-2", "OrderCancelled"),
            ("m-4", "OrderCancelled"),
        ]
        assert asyncio.run(queue_depth(events.amqp_url, "audit")) == 0

    def test_since_and_until_pick_the_events_written_between(self, broker: Broker) -> None:
        asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
        # Three batches, each in chunks of its own, with a mark between each two.
        batch = [("OrderPlaced", "order.placed", f"o-{i}") for i in range(3)]
        asyncio.run(_publish(broker.amqp_url, batch, prefix="early"))
        time.sleep(0.5)  # the marks need chunk timestamps apart, not a condition to poll
        since = time.time()
        time.sleep(0.5)
        asyncio.run(_publish(broker.amqp_url, batch, prefix="middle"))
        time.sleep(0.5)
        until = time.time()
        time.sleep(0.5)
        asyncio.run(_publish(broker.amqp_url, batch, prefix="late"))

        between = replay(
            broker,
            "order-events",
            "--since",
            iso(since),
            "--until",
            iso(until),
            "--into",
            "audit",
        )
        assert between.exit_code == 0, between.output
        assert between.stdout.startswith("replayed 3 events into audit in ")
        received = asyncio.run(collect(broker.amqp_url, "audit", 3, seconds=10))
        assert [r.message_id for r in received] == ["middle-0", "middle-1", "middle-2"]
        assert asyncio.run(queue_depth(broker.amqp_url, "audit")) == 0

        # From the first mark to the end; then from a naive ISO time (UTC), the same.
        later = replay(broker, "order-events", "--since", iso(since), "--into", "audit")
        naive = replay(
            broker,
            "order-events",
            "--since",
            iso(since).removesuffix("+00:00"),
            "--dry-run",
            "--into",
            "audit",
        )
        assert later.exit_code == 0, later.output
        assert naive.exit_code == 0, naive.output
        received = asyncio.run(collect(broker.amqp_url, "audit", 6, seconds=10))
        assert asyncio.run(queue_depth(broker.amqp_url, "audit")) == 0
        assert [r.message_id for r in received] == [
            *(f"middle-{i}" for i in range(3)),
            *(f"late-{i}" for i in range(3)),
        ]
        assert naive.stdout.splitlines()[-1].startswith("would replay 6 events into audit")

    def test_a_window_with_nothing_in_it_replays_nothing(self, events: Broker) -> None:
        result = replay(
            events, "order-events", "--since", iso(time.time() + 3600), "--into", "audit"
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("replayed 0 events into audit in ")

    def test_the_default_end_is_where_the_stream_was_when_the_replay_started(
        self, events: Broker
    ) -> None:
        """Events written while the replay runs are not replayed: it terminates."""
        writing = subprocess.Popen(
            [sys.executable, "-c", _KEEP_PUBLISHING, events.amqp_url],
            stdout=subprocess.DEVNULL,
        )
        try:
            result = replay(
                events, "order-events", "--since", "1h", "--into", "audit", "--rate", "20/s"
            )
            end = asyncio.run(
                last_chunk(StreamEndpoint.from_amqp_url(events.amqp_url), "order-events")
            )
        finally:
            writing.terminate()
            writing.wait(10)
        assert result.exit_code == 0, result.output
        replayed = int(result.stdout.split()[1])
        assert end is not None
        # Written every 20 ms, replayed every 50 ms: the stream grew past what was replayed.
        print(f"\nreplayed {replayed} events; the stream then held {end.offset + 1}")
        assert 5 <= replayed < end.offset + 1 - 10
        received = asyncio.run(collect(events.amqp_url, "audit", replayed, seconds=10))
        assert len(received) == replayed
        assert asyncio.run(queue_depth(events.amqp_url, "audit")) == 0

    def test_dry_run_counts_per_type_and_publishes_nothing(self, events: Broker) -> None:
        result = replay(events, "order-events", "--since", "1h", "--into", "audit", "--dry-run")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[:2] == ["OrderPlaced  3", "OrderCancelled  2"]
        assert lines[2].startswith("would replay 5 events into audit (read in ")
        assert asyncio.run(queue_depth(events.amqp_url, "audit")) == 0

    def test_rate_paces_the_publishes(self, broker: Broker) -> None:
        asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
        many = [("OrderPlaced", "order.placed", f"o-{i}") for i in range(200)]
        asyncio.run(_publish(broker.amqp_url, many))
        started = time.perf_counter()
        result = replay(
            broker, "order-events", "--since", "1h", "--into", "audit", "--rate", "100/s"
        )
        elapsed = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        print(f"\n200 events at --rate 100/s took {elapsed:.2f} s ({result.stdout.strip()})")
        assert elapsed >= 1.8  # 199 intervals of 10 ms after the first token
        received = asyncio.run(collect(broker.amqp_url, "audit", 200, seconds=10))
        assert [r.message_id for r in received] == [f"m-{i}" for i in range(200)]

    def test_no_named_consumer_offset_moves(self, events: Broker) -> None:
        store_offset(events.amqp_url, "order-events", "audit", 1)
        result = replay(events, "order-events", "--since", "1h", "--into", "audit")
        assert result.exit_code == 0, result.output
        assert stored_offset(events.amqp_url, "order-events", "audit") == 1


class TestSuperStream:
    def test_every_partition_is_replayed_each_in_its_order(self, broker: Broker) -> None:
        topology = loads(
            """
queues:
  customers:
    type: stream
    partitions: 3
    key: {field: customer_id}
  audit: {type: classic}
"""
        )
        asyncio.run(apply(topology, broker.amqp_url, management_url=broker.management_url))

        async def publish() -> None:
            connection = await aio_pika.connect(broker.amqp_url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange("customers")
                for i in range(12):
                    await exchange.publish(
                        aio_pika.Message(b"{}", type="CustomerSeen", message_id=f"c-{i}"),
                        routing_key=str(i % 3),  # partition i % 3
                    )

        asyncio.run(publish())
        result = replay(broker, "customers", "--since", "1h", "--into", "audit")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("replayed 12 events from 3 partitions of customers ")
        received = asyncio.run(collect(broker.amqp_url, "audit", 12, seconds=10))
        ids = [int(r.message_id.removeprefix("c-")) for r in received if r.message_id]
        assert sorted(ids) == list(range(12))
        for partition in range(3):  # each partition's own order, partition after partition
            assert [i for i in ids if i % 3 == partition] == list(range(partition, 12, 3))
        assert ids == [*range(0, 12, 3), *range(1, 12, 3), *range(2, 12, 3)]


LEDGER = """
exchanges: {orders: {type: topic}}
queues:
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
  ledger:
    type: quorum
    bind: [{exchange: orders, routing_key: order.placed}]
workers:
  ledger: {module: tests.fixtures.ledger_worker, queue: ledger, prefetch: 50, concurrency: 10}
"""


class TestWorkerInbox:
    async def test_a_worker_skips_the_replayed_events_it_already_handled(
        self, broker: Broker, database: str, tmp_path: Path, pika_publisher: PikaPublisher
    ) -> None:
        """Events with ids, and events without (their derived ids match), are each
        booked once: the replayed copies are counted as duplicates."""
        path = tmp_path / "topology.yaml"
        path.write_text(LEDGER)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        db = await asyncpg.connect(database)
        try:
            await db.execute(SCHEMA)
            port = free_port()
            worker = WorkerProcess(
                "ledger",
                topology_file=path,
                url=broker.amqp_url,
                pythonpath=[ROOT],
                args=["--database-url", database, "--metrics-port", str(port)],
            )
            with worker:
                for i in range(30):
                    pika_publisher.publish(
                        "orders", "order.placed", order(f"o-{i}"), message_id=f"m-{i}"
                    )
                for i in range(30, 35):  # no message id: the worker derives one
                    pika_publisher.publish("orders", "order.placed", order(f"o-{i}"))
                await eventually(lambda: _counter(port, "processed") == 35, what="35 orders booked")

                result = await asyncio.to_thread(
                    replay, broker, "order-events", "--since", "1h", "--into", "ledger"
                )
                assert result.exit_code == 0, result.output
                assert result.stdout.startswith("replayed 35 events into ledger in ")
                await eventually(
                    lambda: _counter(port, "duplicates") == 35, what="35 duplicates skipped"
                )
                booked = await db.fetch("SELECT order_id FROM effects")
            # Every delivery is acked as processed; 35 of them were skipped as duplicates.
            assert _stopped(worker) == {"processed": 70, "duplicates": 35}
        finally:
            await db.close()
        assert Counter(r["order_id"] for r in booked) == {f"o-{i}": 1 for i in range(35)}


def _counter(port: int, name: str) -> float:
    return sum(scrape(port).get(f"fleet_messages_{name}_total", {}).values())


def _stopped(worker: WorkerProcess) -> dict[str, int]:
    [line] = worker.events("worker.stopped")
    return {"processed": line["processed"], "duplicates": line["duplicates"]}


class TestErrors:
    def test_an_unknown_stream_is_one_clear_error(self, events: Broker) -> None:
        result = replay(events, "nowhere", "--since", "1h", "--into", "audit")
        assert result.exit_code == 1
        assert f"no stream or super stream 'nowhere' in vhost '{events.vhost}'" in result.output

    def test_a_missing_queue_is_one_clear_error(self, events: Broker) -> None:
        result = replay(events, "order-events", "--since", "1h", "--into", "nowhere")
        assert result.exit_code == 1
        assert f"no queue 'nowhere' in vhost '{events.vhost}' to replay into" in result.output

    def test_no_stream_plugin_names_it_and_the_port(self, events: Broker) -> None:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = replay(
            events, "order-events", "--since", "1h", "--into", "audit", "--stream-port", str(port)
        )
        assert result.exit_code == 1
        assert f"127.0.0.1:{port}" in result.output
        assert "rabbitmq-plugins enable rabbitmq_stream" in result.output

    def test_until_before_since_is_a_usage_error(self, events: Broker) -> None:
        result = replay(events, "order-events", "--since", "1h", "--until", "2h", "--into", "audit")
        assert result.exit_code == 2
        assert "'2h' is before --since '1h'" in result.output

    @pytest.mark.parametrize(
        ("option", "value", "says"),
        [
            ("--since", "yesterday", "invalid time 'yesterday'"),
            ("--until", "soon", "invalid time 'soon'"),
            ("--rate", "fast", "invalid rate 'fast'"),
        ],
    )
    def test_a_bad_time_or_rate_is_a_usage_error(
        self, events: Broker, option: str, value: str, says: str
    ) -> None:
        args = {"--since": "1h", option: value}
        result = replay(
            events, "order-events", *(x for kv in args.items() for x in kv), "--into", "audit"
        )
        assert result.exit_code == 2
        assert says in result.output

    def test_a_queue_deleted_during_the_replay_fails_it(self, broker: Broker) -> None:
        """Mandatory publishing: the broker returns what it cannot route, and the
        replay stops with an error instead of dropping events."""
        asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
        asyncio.run(_publish(broker.amqp_url, [("OrderPlaced", "order.placed", "o")] * 100))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "stream",
                "replay",
                "order-events",
                "--since",
                "1h",
                "--into",
                "audit",
                "--rate",
                "20/s",
                "--url",
                broker.amqp_url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            asyncio.run(
                eventually(
                    lambda: queue_depth(broker.amqp_url, "audit"), what="a first replayed event"
                )
            )
            with broker.api() as api:
                api.delete(f"/api/queues/{quote(broker.vhost, safe='')}/audit").raise_for_status()
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 1, stderr
        assert "the broker did not take a replayed event for queue 'audit'" in stderr


# Publishes an OrderPlaced every 20 ms until terminated (argv[1]: the AMQP URL).
_KEEP_PUBLISHING = """
import sys, time, pika
connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
channel = connection.channel()
i = 0
while True:
    channel.basic_publish("orders", "order.placed", b"{}", pika.BasicProperties(
        type="OrderPlaced", message_id=f"later-{i}"))
    i += 1
    time.sleep(0.02)
"""
