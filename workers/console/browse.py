"""Read a queue's messages without consuming or reordering them.

AMQP 0-9-1 has no "peek". `fleet dlq show` asks the management API, which
does a basic.get and requeues each message at once; for thousands of
messages that is one round trip (and one JSON body) each. The console
instead consumes with manual acknowledgement and a prefetch that covers the
queue's depth, acknowledges nothing, and closes the channel: the broker then
returns every delivery to the queue. A classic queue puts requeued messages
back at their original position; a quorum queue returns them in their
original order ahead of anything published meanwhile (both are checked by
tests/integration/test_console_browse.py, which compares the queue's contents
and order before and after).

What browsing does change: the `redelivered` flag, and on a quorum queue the
delivery count (`x-delivery-count`). fleet gives dead-letter quorum queues a
delivery limit of 1,000,000 (topology/expand.py) and replay removes the
header, so neither matters. While a browse holds the messages (milliseconds),
another consumer cannot see them: the console runs one browse or action per
queue at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage

#: AMQP's prefetch count is a 16-bit field; a deeper queue is read with no limit.
MAX_PREFETCH = 65535


class QueueNotFound(LookupError):
    """The queue is not on the broker."""


@dataclass(frozen=True)
class Browsed:
    """The messages at the head of a queue, in order, and the queue's depth."""

    messages: list[DeliveredMessage]
    depth: int


async def browse(
    connection: AbstractConnection, queue: str, *, limit: int, wait: float = 10.0
) -> Browsed:
    """Up to `limit` messages from the head of `queue`, left in place and in order.

    Raises:
        QueueNotFound: no such queue.
    """
    channel = await (await connection.channel()).get_underlay_channel()
    try:
        try:
            declared = await channel.queue_declare(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise QueueNotFound(queue) from None
        depth = declared.message_count or 0
        wanted = min(depth, limit)
        if wanted == 0:
            return Browsed([], depth)  # nothing held: nothing to wait for
        await channel.basic_qos(prefetch_count=wanted if wanted <= MAX_PREFETCH else 0)
        received: list[DeliveredMessage] = []
        enough = asyncio.Event()

        async def on_message(message: DeliveredMessage) -> None:
            if len(received) < wanted:
                received.append(message)
            if len(received) >= wanted:
                enough.set()

        await channel.basic_consume(queue, on_message, no_ack=False)
        # The depth was read a moment ago: messages another consumer holds, or that
        # expired, may never come. Whatever arrived by the deadline is the answer.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), wait)
    finally:
        # Closing the channel, not acking, is what returns every delivery to the queue.
        with contextlib.suppress(Exception):
            await channel.close()
    await returned(connection, queue, depth)
    return Browsed(received, depth)


async def returned(connection: AbstractConnection, queue: str, expected: int) -> None:
    """Wait (2 s at most) until `queue` holds `expected` ready messages again.

    A quorum queue takes back a closed channel's deliveries asynchronously, after the
    close is confirmed: a read straight after another would find them missing.
    """
    channel = await (await connection.channel()).get_underlay_channel()
    try:
        for _ in range(40):
            declared = await channel.queue_declare(queue, passive=True)
            if (declared.message_count or 0) >= expected:
                return
            await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
