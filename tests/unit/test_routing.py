"""Routed deliveries: what the frame receiver hands a routed channel's consumer is,
attribute by attribute and byte for byte, what aiormq's own path assembles from the
same stream, in the same order, however the stream is cut into reads; every frame it
does not route comes out of `get_frame` in order, as before."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiormq.abc import DeliveredMessage
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.frame import marshal, unmarshal
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.bench.payload import properties as fleet_properties
from tests.unit.test_decoding import attributes
from workers.runtime.fastpath import routing
from workers.runtime.fastpath.frames import BufferedFrameReceiver

CONSUME, OTHER = 1, 2
TAG = "ctag-fleet"
FRAME_MAX_BODY = 100  # small body frames, so bodies span several


class FakeConnection:
    """What a route reads of aiormq's Connection."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closing: asyncio.Future[None] = self.loop.create_future()
        self._Connection__last_frame_time = 0.0


class FakeChannel:
    """What a route reads of aiormq's Channel: its frame queue, consumers, closing."""

    def __init__(self, connection: FakeConnection, number: int = CONSUME) -> None:
        self.connection = connection
        self.number = number
        self.frames: asyncio.Queue[Any] = asyncio.Queue()
        self.consumers: dict[str, Any] = {}
        self.closing: asyncio.Future[None] = connection.loop.create_future()

    @property
    def is_closed(self) -> bool:
        return self.closing.done()


def delivery_frames(
    tag: int, body: bytes, *, consumer_tag: str = TAG, channel: int = CONSUME
) -> list[tuple[int, Any]]:
    properties = fleet_properties(f"m-{tag}")  # what any client publishes to fleet
    frames: list[Any] = [
        commands.Basic.Deliver(consumer_tag, tag, tag % 5 == 0, "orders", f"order.{tag}"),
        ContentHeader(0, len(body), properties),
    ]
    frames += [
        ContentBody(body[i : i + FRAME_MAX_BODY]) for i in range(0, len(body), FRAME_MAX_BODY)
    ]
    return [(channel, frame) for frame in frames]


def stream(seed: int) -> list[tuple[int, Any]]:
    """Deliveries of every size (none, one frame, many) between other frames."""
    rng = random.Random(seed)
    frames: list[tuple[int, Any]] = []
    for tag in range(1, 60):
        size = rng.choice([0, 1, 37, FRAME_MAX_BODY, FRAME_MAX_BODY + 1, 450])
        frames += delivery_frames(tag, bytes(rng.getrandbits(8) for _ in range(size)))
        if rng.random() < 0.2:
            frames.append((0, Heartbeat()))
        if rng.random() < 0.2:
            frames.append((OTHER, commands.Basic.Ack(tag, False)))
    return frames


def read_by_pamqp(data: bytes) -> list[tuple[int, Any]]:
    """The frames of a stream, as aiormq's own receiver reads them (pamqp)."""
    frames, position = [], 0
    while position < len(data):
        size = 8 + int.from_bytes(data[position + 3 : position + 7], "big")
        _, channel, frame = unmarshal(data[position : position + size])
        frames.append((channel, frame))
        position += size
    return frames


def aiormqs_messages(data: bytes) -> list[dict[str, Any]]:
    """The deliveries aiormq's channel reader assembles from the stream."""
    messages: list[dict[str, Any]] = []
    pending: dict[str, Any] = {}
    for channel, frame in read_by_pamqp(data):
        if channel != CONSUME:
            continue
        if isinstance(frame, commands.Basic.Deliver):
            pending = {"delivery": frame, "body": b""}
        elif isinstance(frame, ContentHeader):
            pending["header"] = frame
            if not frame.body_size:
                messages.append(pending)
        else:
            pending["body"] += frame.value
            if len(pending["body"]) >= pending["header"].body_size:
                messages.append(pending)
    return [described(m["delivery"], m["header"], m["body"]) for m in messages]


def tag_of(message: DeliveredMessage) -> int:
    assert isinstance(message.delivery, commands.Basic.Deliver)
    assert message.delivery.delivery_tag is not None
    return message.delivery.delivery_tag


def shape(frame: Any) -> dict[str, Any]:
    return {} if isinstance(frame, Heartbeat) else attributes(frame)


def described(delivery: Any, header: Any, body: bytes) -> dict[str, Any]:
    return {"delivery": attributes(delivery), "header": attributes(header), "body": body}


def reader_fed(data: bytes, seed: int) -> asyncio.StreamReader:
    """A stream reader holding `data`, cut into reads of random sizes."""
    reader = asyncio.StreamReader()
    rng = random.Random(seed)
    position = 0
    while position < len(data):
        step = rng.randint(1, 300)
        reader.feed_data(data[position : position + step])
        position += step
    reader.feed_eof()
    return reader


async def routed_receiver(
    data: bytes, seed: int
) -> tuple[BufferedFrameReceiver, FakeChannel, FakeConnection, list[DeliveredMessage]]:
    connection = FakeConnection()
    channel = FakeChannel(connection)
    received: list[DeliveredMessage] = []

    async def consumer(message: DeliveredMessage) -> None:
        received.append(message)

    channel.consumers[TAG] = consumer
    receiver = BufferedFrameReceiver(reader_fed(data, seed))
    receiver.started = True
    routing.attach(connection, receiver)  # type: ignore[arg-type]
    assert routing.route(channel)  # type: ignore[arg-type]
    return receiver, channel, connection, received


async def frames_left(receiver: BufferedFrameReceiver) -> list[tuple[int, Any]]:
    """Every frame `get_frame` returns until the stream ends."""
    out: list[tuple[int, Any]] = []
    while True:
        try:
            _, channel, frame = await receiver.get_frame()
        except StopAsyncIteration:
            return out
        out.append((channel, frame))


@pytest.mark.parametrize("seed", range(8))
async def test_routed_deliveries_are_what_aiormq_assembles_and_the_rest_comes_out_in_order(
    seed: int,
) -> None:
    # Given
    frames = stream(seed)
    data = b"".join(marshal(frame, channel) for channel, frame in frames)
    receiver, _, _, received = await routed_receiver(data, seed)
    # When
    left = await frames_left(receiver)
    await asyncio.sleep(0)  # the consumer tasks run
    # Then
    assert [described(m.delivery, m.header, m.body) for m in received] == aiormqs_messages(data)
    assert len(received) == 59
    others = [(c, f) for c, f in read_by_pamqp(data) if c != CONSUME]
    assert [(c, type(f), shape(f)) for c, f in left] == [(c, type(f), shape(f)) for c, f in others]
    assert len(others) > 0


async def test_a_delivery_for_a_consumer_tag_the_channel_does_not_know_goes_aiormqs_way() -> None:
    # Given
    frames = delivery_frames(1, b"{}") + delivery_frames(2, b"{}", consumer_tag="unknown")
    frames += delivery_frames(3, b"{}")
    data = b"".join(marshal(frame, channel) for channel, frame in frames)
    receiver, channel, _, received = await routed_receiver(data, 0)
    # When: aiormq's reader takes what get_frame returns, as its reader loop does
    first = await receiver.get_frame()
    channel.frames.put_nowait(first)
    left = await frames_left(receiver)
    await asyncio.sleep(0)
    # Then: delivery 2 goes to aiormq whole; delivery 3, behind it in aiormq's
    # queue, is not routed past it
    assert [tag_of(m) for m in received] == [1]
    assert isinstance(first[2], commands.Basic.Deliver)
    assert first[2].consumer_tag == "unknown"
    assert len(left) == 2 + 3  # delivery 2's header and body, delivery 3's three frames


async def test_a_delivery_waits_for_aiormqs_reader_to_catch_up_before_it_is_routed() -> None:
    # Given: aiormq's reader still holds a frame of the channel
    frames = delivery_frames(1, b"a") + delivery_frames(2, b"b")
    data = b"".join(marshal(frame, channel) for channel, frame in frames)
    receiver, channel, _, received = await routed_receiver(data, 1)
    channel.frames.put_nowait((0, "held"))

    async def aiormqs_reader() -> None:
        channel.frames.get_nowait()

    asyncio.get_running_loop().create_task(aiormqs_reader())
    # When
    left = await frames_left(receiver)
    await asyncio.sleep(0)
    # Then: both were routed once the queue was empty
    assert left == []
    assert [tag_of(m) for m in received] == [1, 2]


async def test_a_reader_that_does_not_catch_up_gets_the_delivery_itself() -> None:
    # Given: aiormq's reader holds a frame and never takes it
    data = b"".join(marshal(frame, channel) for channel, frame in delivery_frames(1, b"a"))
    receiver, channel, _, received = await routed_receiver(data, 2)
    channel.frames.put_nowait((0, "held"))
    # When
    left = await frames_left(receiver)
    # Then
    assert received == []
    assert [type(frame) for _, frame in left] == [
        commands.Basic.Deliver,
        ContentHeader,
        ContentBody,
    ]


async def test_closing_the_channel_cancels_its_running_deliveries_and_unroutes_it() -> None:
    # Given
    data = b"".join(marshal(f, c) for c, f in delivery_frames(1, b"a") + delivery_frames(2, b"b"))
    connection = FakeConnection()
    channel = FakeChannel(connection)
    started = asyncio.Event()
    cancelled: list[int] = []

    async def consumer(message: DeliveredMessage) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(tag_of(message))
            raise

    channel.consumers[TAG] = consumer
    receiver = BufferedFrameReceiver(reader_fed(data, 3))
    receiver.started = True
    routing.attach(connection, receiver)  # type: ignore[arg-type]
    routing.route(channel)  # type: ignore[arg-type]
    assert await frames_left(receiver) == []
    await started.wait()
    # When
    channel.closing.set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    # Then
    assert sorted(cancelled) == [1, 2]
    assert receiver.routes == {}


async def test_a_routed_delivery_tells_aiormqs_heartbeat_watchdog_a_frame_arrived() -> None:
    data = b"".join(marshal(frame, channel) for channel, frame in delivery_frames(1, b"a"))
    receiver, _, connection, received = await routed_receiver(data, 4)
    await frames_left(receiver)
    await asyncio.sleep(0)
    assert len(received) == 1
    assert connection._Connection__last_frame_time > 0.0


async def test_a_closed_channel_is_not_routed() -> None:
    connection = FakeConnection()
    channel = FakeChannel(connection)
    receiver = BufferedFrameReceiver(asyncio.StreamReader())
    routing.attach(connection, receiver)  # type: ignore[arg-type]
    channel.closing.set_result(None)
    assert not routing.route(channel)  # type: ignore[arg-type]
    assert receiver.routes == {}


async def test_a_channel_of_a_connection_the_fast_path_did_not_open_is_not_routed() -> None:
    channel = FakeChannel(FakeConnection())
    assert not routing.route(channel)  # type: ignore[arg-type]


def test_the_frames_marshal_as_they_unmarshal() -> None:
    """The test's own stream is what pamqp reads back (so the comparison means something)."""
    for channel, frame in stream(0)[:6]:
        data = marshal(frame, channel)
        assert unmarshal(data)[1] == channel


async def test_a_delivery_left_to_aiormq_halfway_does_not_hold_back_the_frames_after_it() -> None:
    """A routed delivery still arriving when its channel closes goes aiormq's way,
    whole, and the frames after it come out without waiting for more bytes."""
    # Given: two routed channels, and half of a large delivery on the first
    connection = FakeConnection()
    first, second = FakeChannel(connection, 1), FakeChannel(connection, 3)
    reader = asyncio.StreamReader()
    receiver = BufferedFrameReceiver(reader)
    receiver.started = True
    routing.attach(connection, receiver)  # type: ignore[arg-type]
    for channel in (first, second):
        channel.consumers[TAG] = lambda message: asyncio.sleep(0)
        assert routing.route(channel)  # type: ignore[arg-type]
    data = b"".join(marshal(f, c) for c, f in delivery_frames(1, b"x" * 450))
    reader.feed_data(data[:150])
    waiting = asyncio.ensure_future(receiver.get_frame())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the receiver waits for the rest of the delivery
    # When: the channel closes, and the rest arrives with a heartbeat after it
    first.closing.set_result(None)
    await asyncio.sleep(0)
    reader.feed_data(data[150:] + marshal(Heartbeat(), 0))
    got = [await asyncio.wait_for(waiting, 1)]
    for _ in range(6):  # the header, five body frames, then the heartbeat
        got.append(await asyncio.wait_for(receiver.get_frame(), 1))
    # Then
    assert [type(frame) for _, _, frame in got] == [
        commands.Basic.Deliver,
        ContentHeader,
        *[ContentBody] * 5,
    ]
    assert isinstance((await asyncio.wait_for(receiver.get_frame(), 1))[2], Heartbeat)
