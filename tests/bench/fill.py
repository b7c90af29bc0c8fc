"""Pre-filling a queue fast, so a default run spends its time measuring.

Messages are written as spliced frames (see `frames`), 1,000 per write; then
the queue's depth is polled until every message is in it, so the broker has
taken them all before a contender starts.
"""

from __future__ import annotations

import asyncio
import time

from aiormq.abc import AbstractChannel, AbstractConnection

from tests.bench.frames import Template, write

BATCH = 1000
FILL_TIMEOUT = 120.0


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

    `channel` must not be in confirm mode. The queue is expected to be empty.
    With `wait` False (a consumer is emptying the queue meanwhile), return once
    everything is written.

    Raises:
        TimeoutError: the queue did not reach `count` messages in time.
    """
    template = Template(channel.number, queue, tag)
    for start in range(0, count, BATCH):
        end = min(count, start + BATCH)
        await write(connection, b"".join(template.message(i) for i in range(start, end)))
    if wait:
        await _wait_for_depth(channel, queue, count)


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
