"""Consuming a stream: aio-pika over AMQP 0.9.1 against rstream's native protocol (issue 18).

    .venv/bin/python -m tests.bench.stream_clients [--messages 100000] [--rounds 3]

Fills one stream with N persistent ~300-byte messages, then reads all of them from the
first offset, each client in turn, each round: aio-pika with basic.consume,
x-stream-offset=first, prefetch 1000 and a manual ack per message (streams require
acks to grant credit); rstream subscribing from OffsetType.FIRST on port 5552. It runs
in its own vhost, deleted afterwards. Prints msg/s per client per round and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from urllib.parse import quote, urlsplit

import aio_pika
import httpx
from rstream import AMQPMessage, Consumer, ConsumerOffsetSpecification, MessageContext, Producer
from rstream.constants import OffsetType

AMQP_URL = os.environ.get("FLEET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGEMENT_URL = os.environ.get("FLEET_TEST_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")
STREAM = "bench-stream"
# The shape of the bench's OrderPlaced: fleet's JSON envelope, ~300 bytes.
BODY = (
    b'{"type":"OrderPlaced","version":2,"message_id":"'
    + uuid.uuid4().hex.encode()
    + b'","correlation_id":"c","data":{"order_id":"o-000001","customer_id":"cust-42",'
    b'"lines":[{"sku":"SKU-1","quantity":2,"price":"19.90"}],"currency":"EUR",'
    b'"placed_at":"2026-01-01T00:00:00Z","total":"39.80"}}'
).ljust(300, b" ")


async def fill(host: str, vhost: str, count: int) -> None:
    """N messages through rstream's producer (the fastest way in; not what is measured)."""
    async with Producer(host, username="guest", password="guest", vhost=vhost) as producer:
        await producer.create_stream(STREAM, exists_ok=True)
        batch = [AMQPMessage(body=BODY) for _ in range(500)]
        for _ in range(count // 500):
            await producer.send_batch(STREAM, batch)


async def with_aio_pika(url: str, count: int) -> float:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(STREAM, ensure=False)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == count:
                done.set()

        started = time.perf_counter()
        await queue.consume(on_message, arguments={"x-stream-offset": "first"})
        await done.wait()
        return count / (time.perf_counter() - started)


async def with_rstream(host: str, vhost: str, count: int) -> float:
    done = asyncio.Event()
    seen = 0

    async def on_message(_: AMQPMessage, context: MessageContext) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    async with Consumer(host, username="guest", password="guest", vhost=vhost) as consumer:
        started = time.perf_counter()
        await consumer.subscribe(
            STREAM,
            on_message,
            offset_specification=ConsumerOffsetSpecification(OffsetType.FIRST, None),
        )
        await done.wait()
        return count / (time.perf_counter() - started)


async def measure(host: str, vhost: str, count: int, rounds: int) -> None:
    await fill(host, vhost, count)
    url = f"{AMQP_URL.rstrip('/')}/{quote(vhost, safe='')}"
    results: dict[str, list[float]] = {"aio-pika (AMQP 0.9.1)": [], "rstream (stream)": []}
    for i in range(rounds):
        results["aio-pika (AMQP 0.9.1)"].append(await with_aio_pika(url, count))
        results["rstream (stream)"].append(await with_rstream(host, vhost, count))
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in results.items()))
    for name, rates in results.items():
        print(f"{name}: median {statistics.median(rates):,.0f} msg/s over {rounds} rounds")


def main(count: int, rounds: int) -> None:
    """Measure in a vhost of its own, deleted afterwards."""
    host = urlsplit(AMQP_URL).hostname or "127.0.0.1"
    vhost = f"fleet-bench-streams-{uuid.uuid4().hex[:6]}"
    management = urlsplit(MANAGEMENT_URL)
    with httpx.Client(
        base_url=f"{management.scheme}://{management.hostname}:{management.port or 15672}",
        auth=(management.username or "guest", management.password or "guest"),
        timeout=30,
    ) as api:
        path = f"/api/vhosts/{quote(vhost, safe='')}"
        api.put(path).raise_for_status()
        api.put(
            f"/api/permissions/{quote(vhost, safe='')}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        try:
            asyncio.run(measure(host, vhost, count, rounds))
        finally:
            api.delete(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    main(options.messages, options.rounds)
