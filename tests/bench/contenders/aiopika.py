"""Bare aio-pika, written the way a careful user would by hand.

Consumers decode each body with a cached msgspec Decoder into the same
contract Struct fleet uses and ack each message (`await message.ack()`) after
its work is done; the saga step publishes its follow-on on a second channel
with publisher confirms and `mandatory`, awaits the confirm, then acks.
aiormq runs each delivery's callback in its own task, so up to `prefetch`
deliveries are in progress at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aio_pika
import msgspec
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from fulfilment.contracts.orders import OrderPlaced

from tests.bench.child import Signals, run_loop
from tests.bench.payload import JSON, ORDER, SENT_NS, reserve
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome, phases

Callback = Callable[[AbstractIncomingMessage], Awaitable[None]]

_decoder = msgspec.json.Decoder(OrderPlaced)
_encoder = msgspec.json.Encoder()


def run(job: Job, signals: Signals) -> Outcome:
    signals.ready()
    main = _publish(job) if job.role == "publish" else _consume(job, signals)
    return run_loop(job.loop, main)


async def _consume(job: Job, signals: Signals) -> Outcome:
    probe = Probe(
        job.expected,
        phases(job.rates, job.seconds) if job.rates else None,
        warmup=job.warmup_messages,
    )
    done = asyncio.Event()
    probe.on_done = done.set
    connection = await aio_pika.connect(job.url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=job.prefetch)
        queue = await channel.get_queue(job.queue, ensure=False)
        if job.role == "saga":
            confirming = await connection.channel(publisher_confirms=True, on_return_raises=True)
            callback = _saga_step(probe, await confirming.get_exchange("inventory", ensure=False))
        elif job.role == "latency":
            callback = _timed(probe)
        else:
            callback = _drain(probe)
        tag = await queue.consume(callback)
        signals.consuming()
        await done.wait()
        await queue.cancel(tag)
        end = now()
    return probe.outcome(*end, warmup=job.warmup)


def _drain(probe: Probe) -> Callback:
    async def on_message(message: AbstractIncomingMessage) -> None:
        _decoder.decode(message.body)  # the handler does nothing with the event
        await message.ack()
        probe.tick()

    return on_message


def _timed(probe: Probe) -> Callback:
    async def on_message(message: AbstractIncomingMessage) -> None:
        _decoder.decode(message.body)
        probe.sent_at(message.headers[SENT_NS])  # type: ignore[arg-type]
        await message.ack()

    return on_message


def _saga_step(probe: Probe, exchange: AbstractExchange) -> Callback:
    async def on_message(message: AbstractIncomingMessage) -> None:
        event = _decoder.decode(message.body)
        follow_on = reserve(event)
        message_id = f"{message.message_id}.reserved"
        await exchange.publish(
            aio_pika.Message(
                _encoder.encode(follow_on),
                content_type=JSON,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
                correlation_id=message.correlation_id or message.message_id,
                type="StockReserved",
                timestamp=datetime.now(UTC),
                headers={"version": 1, "causation-id": message.message_id},
            ),
            routing_key="stock.reserved",
            mandatory=True,
        )
        await message.ack()
        probe.tick()

    return on_message


async def _publish(job: Job) -> Outcome:
    """`job.expected` OrderPlaced events with `job.lanes` confirms awaited at once."""
    connection = await aio_pika.connect(job.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange("orders", ensure=False)
        indexes = iter(range(job.expected))

        async def lane() -> None:
            for i in indexes:  # shared: each lane takes the next index
                message_id = f"{job.tag}-{i}"
                await exchange.publish(
                    aio_pika.Message(
                        _encoder.encode(ORDER),
                        content_type=JSON,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message_id,
                        correlation_id=message_id,
                        type="OrderPlaced",
                        timestamp=datetime.now(UTC),
                        headers={"version": 1},
                    ),
                    routing_key="order.placed",
                    mandatory=True,
                )

        probe = Probe(job.expected)
        probe.tick()  # starts both clocks
        await asyncio.gather(*(lane() for _ in range(job.lanes)))
        end = now()
    probe.count = job.expected
    return probe.outcome(*end)
