"""Pre-filling a queue fast, so a default run spends its time measuring.

A Python client publishes a persistent message in ~100 µs here (aiormq builds
and marshals frames per message), slower than the broker ingests them. The
bench marshals one message with pamqp, then writes copies in batches straight
to the connection's frame queue, splicing in each message id (all ids have the
same length, so the frame sizes stay valid). The queue's depth is then polled
until every message is in it: the broker has taken them all before a contender
starts. The messages are byte-for-byte what `payload.properties` describes.
"""

from __future__ import annotations

import asyncio
import time

from aiormq.abc import AbstractChannel, AbstractConnection, ChannelFrame
from pamqp import body, commands, frame, header

from tests.bench.payload import BODY, properties

BATCH = 1000
FILL_TIMEOUT = 120.0


def message_id(tag: str, index: int) -> str:
    """The id of a pre-filled message: fixed width, so frames can be spliced."""
    return f"{tag}-{index:09d}"


async def fill(
    connection: AbstractConnection,
    channel: AbstractChannel,
    queue: str,
    count: int,
    tag: str,
    *,
    wait: bool = True,
) -> None:
    """Publish `count` OrderPlaced messages to `queue` and wait until all are in it.

    `channel` must not be in confirm mode (the broker's delivery tags would not
    match the channel's count). The queue is expected to be empty. With `wait`
    False (a consumer is emptying the queue meanwhile), return once written.

    Raises:
        TimeoutError: the queue did not reach `count` messages in time.
    """
    placeholder = message_id(tag, 0)
    template = _publish_frames(channel.number, queue, placeholder)
    loop = asyncio.get_running_loop()
    old = placeholder.encode()
    for start in range(0, count, BATCH):
        payload = b"".join(
            template.replace(old, message_id(tag, i).encode())
            for i in range(start, min(count, start + BATCH))
        )
        drained = loop.create_future()
        await connection.write_queue.put(  # type: ignore[attr-defined]
            ChannelFrame(payload=payload, should_close=False, drain_future=drained)
        )
        await drained
    if wait:
        await _wait_for_depth(channel, queue, count)


def _publish_frames(channel_number: int, queue: str, message_id: str) -> bytes:
    """basic.publish + content header + body of one message, marshalled."""
    publish = commands.Basic.Publish(exchange="", routing_key=queue)
    content = header.ContentHeader(0, len(BODY), properties(message_id))
    return b"".join(
        frame.marshal(part, channel_number) for part in (publish, content, body.ContentBody(BODY))
    )


async def _wait_for_depth(channel: AbstractChannel, queue: str, count: int) -> None:
    deadline = time.monotonic() + FILL_TIMEOUT
    while True:
        declared = await channel.queue_declare(queue, passive=True)
        depth = declared.message_count or 0
        if depth >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {queue!r} holds {depth} of {count} messages")
        await asyncio.sleep(0.01)
