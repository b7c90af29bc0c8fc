"""A stream's end offset, and how far behind it each named consumer's stored offset is.

The stream protocol answers query_offset for a consumer reference it is given, but
has no command that lists the references with an offset: the names must come from
elsewhere (the topology's workers, or the operator).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from rstream import AMQPMessage, ConsumerOffsetSpecification, MessageContext, OffsetNotFound
from rstream.constants import OffsetType

from workers.streams.connect import StreamEndpoint

#: How long to wait for the last chunk before calling a stream empty.
EMPTY_AFTER = 2.0


@dataclass(frozen=True)
class ConsumerOffset:
    """A named consumer's stored offset (None: it never stored one) and its lag."""

    name: str
    offset: int | None
    lag: int | None


@dataclass(frozen=True)
class StreamOffsets:
    """A stream's last offset (None when empty) and its named consumers' offsets."""

    stream: str
    end: int | None
    consumers: list[ConsumerOffset]


async def offsets(endpoint: StreamEndpoint, streams: dict[str, list[str]]) -> list[StreamOffsets]:
    """For each stream (→ the consumer names to ask about), its end and their offsets.

    Raises:
        StreamUnavailable: the stream protocol is unreachable or a stream does not exist.
    """
    consumer = endpoint.consumer()
    await endpoint.start(consumer)
    found: list[StreamOffsets] = []
    try:
        for stream, names in streams.items():
            await endpoint.require(consumer, stream)
            last = await last_chunk(endpoint, stream)
            end = None if last is None else last.offset
            rows = []
            for name in names:
                try:
                    stored: int | None = await consumer.query_offset(stream, name)
                except OffsetNotFound:
                    stored = None
                lag = None if stored is None or end is None else max(end - stored, 0)
                rows.append(ConsumerOffset(name=name, offset=stored, lag=lag))
            found.append(StreamOffsets(stream=stream, end=end, consumers=rows))
    finally:
        await consumer.close()
    return found


@dataclass(frozen=True)
class LastMessage:
    """A stream's last message: its offset and its chunk's timestamp (ms since the epoch)."""

    offset: int
    timestamp: int


async def last_chunk(endpoint: StreamEndpoint, stream: str) -> LastMessage | None:
    """The stream's last message (None when empty): read from its last chunk (RabbitMQ
    3.10 has no stream-stats command), by an unnamed subscription that stores nothing.

    Subscribed at `last`, the broker sends the last chunk first, as one frame whose
    messages rstream hands over without yielding: once this coroutine runs again, that
    chunk is complete. Chunks written since may follow in the same step; their
    timestamps are later, unless written within the same millisecond.
    """
    first_chunk: int | None = None  # its timestamp
    last: LastMessage | None = None
    arrived = asyncio.Event()

    def on_message(_: AMQPMessage, context: MessageContext) -> None:
        nonlocal first_chunk, last
        if first_chunk is None:
            first_chunk = context.timestamp
        if context.timestamp == first_chunk and (last is None or context.offset > last.offset):
            last = LastMessage(context.offset, context.timestamp)
        arrived.set()

    reader = endpoint.consumer()
    await endpoint.start(reader)
    try:
        await reader.subscribe(
            stream,
            on_message,
            offset_specification=ConsumerOffsetSpecification(OffsetType.LAST, None),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), EMPTY_AFTER)
        return last
    finally:
        await reader.close()
