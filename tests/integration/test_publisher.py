"""fleet's Publisher on a real broker: its own marshalling and queueing of
publishes (`wire`, `sending`) keep every guarantee of aiormq's basic_publish.

Each publish is confirmed, a returned message fails, a closed channel fails
its waiting publishes instead of hanging them, and publishes from the direct
path and from aiormq's own basic_publish share one channel's sequence numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest
from aiormq.abc import AbstractChannel
from aiormq.exceptions import AMQPError, ChannelInvalidStateError
from pamqp.commands import Basic

from tests.conftest import Broker
from workers.errors import PublishFailed
from workers.runtime.connection import connect
from workers.runtime.fastpath.sending import FrameSender
from workers.runtime.outgoing import Outgoing
from workers.runtime.publisher import Publisher
from workers.testing import collect

EXCHANGE = "events"
QUEUE = "received"


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[AbstractChannel]:
    """A confirm-mode channel on the test vhost, with EXCHANGE routing `order.*` to QUEUE."""
    connection = await connect(broker.amqp_url, name="test-publisher")
    try:
        setup = await connection.channel()
        exchange = await setup.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC)
        queue = await setup.declare_queue(QUEUE, durable=True)
        await queue.bind(exchange, "order.*")
        publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await publish.get_underlay_channel()
    finally:
        await connection.close()


def message(n: int, routing_key: str = "order.placed", **changes: object) -> Outgoing:
    fields: dict[str, object] = {
        "exchange": EXCHANGE,
        "routing_key": routing_key,
        "body": b'{"n": %d}' % n,
        "message_id": f"m-{n}",
        "correlation_id": f"saga-{n % 7}",
        "causation_id": f"cause-{n}",
        "type": "OrderPlaced",
        "version": 2,
        "mandatory": True,
        "timestamp": datetime.now(UTC),
        "app_id": "fleet.test",
        "trace": {"traceparent": f"00-{n:032x}-{n:016x}-01"},
    }
    fields.update(changes)
    return Outgoing(**fields)  # type: ignore[arg-type]


async def test_the_direct_path_drives_a_confirm_channel(channel: AbstractChannel) -> None:
    assert FrameSender.on(channel) is not None


async def test_messages_arrive_with_fleets_wire_format(
    broker: Broker, channel: AbstractChannel
) -> None:
    publisher = Publisher(channel, app_id="fleet.test")
    sent = [message(n) for n in range(20)]
    await asyncio.gather(*(publisher.publish_outgoing(m) for m in sent))

    received = await collect(broker.amqp_url, QUEUE, 20)
    assert [r.message_id for r in received] == [m.message_id for m in sent]
    first, original = received[0], sent[0]
    assert first.body == original.body
    assert first.type == "OrderPlaced"
    assert first.correlation_id == original.correlation_id
    assert first.routing_key == "order.placed"
    assert first.headers["version"] == 2
    assert first.headers["causation-id"] == "cause-0"
    assert first.headers["traceparent"] == original.trace["traceparent"]  # type: ignore[index]
    assert first.headers["timestamp_in_ms"] == int(original.timestamp.timestamp() * 1000)


async def test_a_returned_message_fails_and_the_others_are_confirmed(
    broker: Broker, channel: AbstractChannel
) -> None:
    publisher = Publisher(channel)
    outcomes = await asyncio.gather(
        *(
            publisher.publish_outgoing(
                message(n, routing_key="nowhere.bound" if n % 5 == 0 else "order.placed")
            )
            for n in range(50)
        ),
        return_exceptions=True,
    )
    failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, PublishFailed)]
    assert failed == list(range(0, 50, 5))
    assert all(outcome is None for n, outcome in enumerate(outcomes) if n % 5)
    assert "nothing is bound to exchange 'events'" in str(outcomes[0])
    assert len(await collect(broker.amqp_url, QUEUE, 40)) == 40


async def test_direct_and_aiormq_publishes_share_the_channels_sequence(
    broker: Broker, channel: AbstractChannel
) -> None:
    """Interleaved with basic_publish (which holds the channel lock across awaits)
    and numerous enough to fill aiormq's write queue (10 frame sets), so the
    direct path also waits for the lock and for room: every publish is
    confirmed, every returned one fails, each exactly once."""
    publisher = Publisher(channel)

    async def raw(n: int) -> None:
        routing_key = "nowhere.bound" if n % 9 == 0 else "order.placed"
        await publisher.publish(
            b'{"n": %d}' % n,
            exchange=EXCHANGE,
            routing_key=routing_key,
            properties=Basic.Properties(message_id=f"raw-{n}", delivery_mode=2),
        )

    async def via_aiormq(n: int) -> None:
        await channel.basic_publish(
            b'{"n": %d}' % n,
            exchange=EXCHANGE,
            routing_key="order.placed",
            properties=Basic.Properties(message_id=f"aiormq-{n}", delivery_mode=2),
            mandatory=True,
        )

    calls = []
    for n in range(300):
        calls += [publisher.publish_outgoing(message(n)), raw(n), via_aiormq(n)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(e, PublishFailed) for e in errors), errors[:3]
    assert len(errors) == len(range(0, 300, 9))
    expected = 300 + (300 - len(errors)) + 300
    received = await collect(broker.amqp_url, QUEUE, expected, seconds=60)
    ids = [r.message_id for r in received]
    assert len(ids) == expected == len(set(ids))
    assert {f"m-{n}" for n in range(300)} <= set(ids)
    assert not {f"raw-{n}" for n in range(0, 300, 9)} & set(ids)


async def test_a_channel_closed_by_the_broker_fails_waiting_publishes(
    channel: AbstractChannel,
) -> None:
    """A publish to a missing exchange makes the broker close the channel (404):
    that publish and those sent with it fail instead of waiting forever, and a
    publish on the closed channel fails at once."""
    publisher = Publisher(channel)
    doomed = [
        publisher.publish_outgoing(message(1, exchange="no-such-exchange")),
        *(publisher.publish_outgoing(message(n)) for n in range(2, 10)),
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*doomed, return_exceptions=True), 10)
    assert isinstance(outcomes[0], AMQPError), outcomes[0]
    assert "no-such-exchange" in str(outcomes[0])
    with pytest.raises(ChannelInvalidStateError):
        await asyncio.wait_for(publisher.publish_outgoing(message(11)), 10)
