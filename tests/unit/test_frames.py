"""The bulk frame reader yields exactly what aiormq's own receiver yields, however
the bytes arrive, and fails the same way on a broken stream."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import aiormq.connection
import pytest
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.frame import marshal
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from workers.runtime.fastpath.frames import BufferedFrameReceiver, install

#: aiormq's own receiver, which the bulk reader extends.
ORIGINAL = BufferedFrameReceiver.__mro__[1]


def stream() -> bytes:
    """Deliveries (method, header with properties and headers, body), acks,
    a heartbeat and a large body split over frames, on two channels."""
    frames: list[bytes] = []
    for tag in range(1, 60):
        body = b'{"order_id": "o-%d"}' % tag
        properties = commands.Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=f"m-{tag}",
            message_type="OrderPlaced",
            timestamp=datetime(2026, 11, 23, tzinfo=UTC),
            headers={"version": 1, "x-fleet-attempts": tag % 3, "trace": "00-ab"},
        )
        channel = 1 + tag % 2
        frames.append(
            marshal(commands.Basic.Deliver("ctag", tag, False, "orders", "order.placed"), channel)
        )
        frames.append(marshal(ContentHeader(0, len(body), properties), channel))
        frames.append(marshal(ContentBody(body), channel))
        if tag % 10 == 0:
            frames.append(marshal(Heartbeat(), 0))
            frames.append(marshal(commands.Basic.Ack(tag, multiple=True), channel))
    big = b"x" * 300_000
    frames.append(marshal(ContentHeader(0, len(big), commands.Basic.Properties()), 1))
    frames += [marshal(ContentBody(big[i : i + 131_064]), 1) for i in range(0, len(big), 131_064)]
    return b"".join(frames)


async def receive(
    receiver_class: Any, data: bytes, chunks: list[int]
) -> list[tuple[int, int, bytes]]:
    reader = asyncio.StreamReader()
    position = 0
    for size in chunks:
        reader.feed_data(data[position : position + size])
        position += size
    reader.feed_data(data[position:])
    reader.feed_eof()
    receiver = receiver_class(reader)
    seen = []
    async for consumed, channel, frame in receiver:
        # Marshalled again: equal bytes, equal frames (pamqp frames have no __eq__).
        seen.append((consumed, channel, marshal(frame, channel)))
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_it_yields_what_aiormqs_receiver_yields_in_any_chunking(seed: int) -> None:
    assert install(), "install() refused this aiormq"
    data = stream()
    rng = random.Random(seed)
    chunks = [rng.choice([1, 2, 7, 8, 50, 4096, 70_000]) for _ in range(400)]
    expected = await receive(ORIGINAL, data, [len(data)])
    got = await receive(BufferedFrameReceiver, data, chunks)
    assert len(got) == len(expected) == 191
    assert got == expected
    assert b"".join(frame for _, _, frame in got) == data


async def test_a_stream_cut_mid_frame_is_a_connection_error() -> None:
    data = stream()[:-5]
    with pytest.raises(AMQPConnectionError, match="middle of a frame"):
        await receive(BufferedFrameReceiver, data, [])


async def test_a_frame_without_its_end_octet_is_invalid() -> None:
    good = marshal(Heartbeat(), 0)
    with pytest.raises(InvalidFrameError):
        await receive(BufferedFrameReceiver, good[:-1] + b"\x00", [])


async def test_a_protocol_header_instead_of_a_frame_is_refused() -> None:
    with pytest.raises(ProtocolSyntaxError):
        await receive(BufferedFrameReceiver, b"AMQP\x00\x00\x09\x01", [])


def test_install_is_idempotent_and_in_place() -> None:
    assert install()
    assert install()
    assert aiormq.connection.FrameReceiver is BufferedFrameReceiver
