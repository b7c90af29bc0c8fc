"""`fleet stream tail` and `fleet stream offsets` against a real RabbitMQ, each test in
its own vhost, the stream protocol logging in to that vhost."""

from __future__ import annotations

import asyncio
import socket

import aio_pika
import pytest
from click.testing import CliRunner, Result

from tests.conftest import Broker
from tests.fixtures.stream_offsets import store_offset
from topology import loads
from topology.apply import apply
from workers.cli import cli

TOPOLOGY = loads(
    """
exchanges: {orders: {type: topic}}
queues:
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
    stream: {max_age: 1d}
"""
)
EVENTS = [
    ("OrderPlaced", "order.placed", "o-1"),
    ("OrderPlaced", "order.placed", "o-2"),
    ("OrderCancelled", "order.cancelled", "o-1"),
    ("OrderPlaced", "order.placed", "o-3"),
    ("OrderCancelled", "order.cancelled", "o-3"),
]


async def _publish(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()  # publisher confirms: each publish is confirmed
        exchange = await channel.get_exchange("orders")
        for i, (event_type, key, order) in enumerate(EVENTS):
            await exchange.publish(
                aio_pika.Message(
                    f'{{"order_id": "{order}"}}'.encode(),
                    type=event_type,
                    message_id=f"m-{i}",
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=key,
            )


@pytest.fixture
def events(broker: Broker) -> Broker:
    """The vhost with stream order-events holding the five EVENTS (offsets 0-4)."""
    asyncio.run(apply(TOPOLOGY, broker.amqp_url, management_url=broker.management_url))
    asyncio.run(_publish(broker.amqp_url))
    return broker


def fleet(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="fleet")


def lines(result: Result) -> list[list[str]]:
    """The rows tail printed on stdout (log lines, on stderr, are not rows)."""
    return [line.split("  ") for line in result.stdout.splitlines()]


class TestTail:
    def test_tail_from_first_prints_each_event(self, events: Broker) -> None:
        result = fleet(
            "stream",
            "tail",
            "order-events",
            "--from",
            "first",
            "--limit",
            "5",
            "--url",
            events.amqp_url,
        )
        assert result.exit_code == 0, result.output
        rows = lines(result)
        assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
            (str(i), t, f"m-{i}", f'{{"order_id": "{o}"}}') for i, (t, _, o) in enumerate(EVENTS)
        ]
        assert all(r[1].endswith("+00:00") for r in rows)  # ISO time, UTC

    def test_filter_shows_only_that_type(self, events: Broker) -> None:
        result = fleet(
            "stream",
            "tail",
            "order-events",
            "--from",
            "first",
            "--filter",
            "OrderCancelled",
            "--limit",
            "2",
            "--url",
            events.amqp_url,
        )
        assert result.exit_code == 0, result.output
        assert [(r[0], r[2]) for r in lines(result)] == [
            ("2", "OrderCancelled"),
            ("4", "OrderCancelled"),
        ]

    def test_from_an_offset_starts_there(self, events: Broker) -> None:
        result = fleet(
            "stream", "tail", "order-events", "--from", "3", "--idle", "1", "--url", events.amqp_url
        )
        assert result.exit_code == 0, result.output
        assert [r[0] for r in lines(result)] == ["3", "4"]

    def test_a_missing_stream_is_one_clear_error(self, broker: Broker) -> None:
        result = fleet("stream", "tail", "nowhere", "--limit", "1", "--url", broker.amqp_url)
        assert result.exit_code == 1
        assert f"no stream 'nowhere' in vhost '{broker.vhost}'" in result.output

    def test_no_stream_plugin_names_it(self, broker: Broker) -> None:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = fleet(
            "stream",
            "tail",
            "order-events",
            "--limit",
            "1",
            "--stream-port",
            str(port),
            "--url",
            broker.amqp_url,
        )
        assert result.exit_code == 1
        assert "rabbitmq-plugins enable rabbitmq_stream" in result.output

    def test_a_bad_start_is_a_usage_error(self, broker: Broker) -> None:
        result = fleet(
            "stream", "tail", "order-events", "--from", "yesterday", "--url", broker.amqp_url
        )
        assert result.exit_code == 2
        assert "invalid start 'yesterday'" in result.output


class TestOffsets:
    def test_offsets_show_the_end_and_each_named_consumers_lag(self, events: Broker) -> None:
        store_offset(events.amqp_url, "order-events", "audit", 1)
        tail = fleet(
            "stream",
            "tail",
            "order-events",
            "--from",
            "first",
            "--limit",
            "5",
            "--url",
            events.amqp_url,
        )
        assert tail.exit_code == 0, tail.output
        result = fleet(
            "stream",
            "offsets",
            "order-events",
            "--consumer",
            "audit",
            "--consumer",
            "billing",
            "--url",
            events.amqp_url,
        )
        assert result.exit_code == 0, result.output
        # tail stored nothing: audit is where it was, billing has no offset at all.
        assert result.stdout.splitlines() == [
            "order-events: last offset 4",
            "  audit: offset 1, lag 3",
            "  billing: no stored offset",
        ]
