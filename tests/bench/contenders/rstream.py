"""Bare rstream, the stream drain's baseline, written the way a careful user would.

It subscribes to the stream from the first offset under a consumer name of its
own (one per round), with rstream's `amqp_decoder` (the library's way to read a
message published over AMQP 0.9.1), decodes each body with a cached msgspec
Decoder into the same contract Struct fleet uses, and counts it; after the last
one it stores that offset once, as a consumer that means to resume would. The
measurement runs from the first message to that store.
"""

from __future__ import annotations

import asyncio

import msgspec
from fulfilment.contracts.orders import OrderPlaced
from rstream import AMQPMessage, ConsumerOffsetSpecification, MessageContext, amqp_decoder
from rstream.constants import OffsetType

from tests.bench.child import Signals, run_loop
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome
from workers.streams.connect import StreamEndpoint

_decoder = msgspec.json.Decoder(OrderPlaced)


def run(job: Job, signals: Signals) -> Outcome:
    signals.ready()
    return run_loop(job.loop, _drain(job, signals))


async def _drain(job: Job, signals: Signals) -> Outcome:
    endpoint = StreamEndpoint.from_amqp_url(job.url)
    name = f"bench-rstream-{job.tag}"
    probe = Probe(job.expected)
    done = asyncio.Event()
    probe.on_done = done.set
    last = 0

    async def on_message(message: AMQPMessage, context: MessageContext) -> None:
        nonlocal last
        _decoder.decode(message.body)  # the handler does nothing with the event
        last = context.offset
        probe.tick()

    consumer = endpoint.consumer("fleet bench rstream")
    await consumer.start()
    try:
        await consumer.subscribe(
            job.queue,
            on_message,
            decoder=amqp_decoder,
            offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None),
            subscriber_name=name,
        )
        signals.consuming()
        await done.wait()
        await consumer.store_offset(job.queue, name, last)
        end = now()
    finally:
        await consumer.close()
    return probe.outcome(*end)
