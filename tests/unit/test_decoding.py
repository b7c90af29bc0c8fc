"""The delivery fast path decodes exactly what pamqp decodes, attribute by
attribute, for every property and odd value, and refuses malformed frames."""

from __future__ import annotations

import asyncio
import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from aiormq.exceptions import InvalidFrameError
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.exceptions import PAMQPException
from pamqp.frame import marshal, unmarshal
from pamqp.header import ContentHeader

from workers.runtime import headers as h
from workers.runtime.fastpath.decoding import decode_frame
from workers.runtime.fastpath.frames import BufferedFrameReceiver


def attributes(frame: Any) -> dict[str, Any]:
    """Every attribute pamqp gives a frame (nested properties included)."""
    if isinstance(frame, ContentHeader):
        return {
            "class_id": frame.class_id,
            "weight": frame.weight,
            "body_size": frame.body_size,
            "properties": attributes(frame.properties),
        }
    if isinstance(frame, ContentBody):
        return {"value": frame.value}
    return {name: getattr(frame, name) for name in frame.__slots__}


def assert_decodes_as_pamqp(data: bytes) -> None:
    expected, got = unmarshal(data), decode_frame(data)
    assert type(got[2]) is type(expected[2])
    assert got[:2] == expected[:2]
    assert attributes(got[2]) == attributes(expected[2])


@pytest.mark.parametrize(
    "deliver",
    [
        commands.Basic.Deliver("ctag-1", 1, False, "orders", "order.placed"),
        commands.Basic.Deliver("amq.ctag-ünï", 2**40, True, "", "orders"),
        commands.Basic.Deliver("", 7, True, "x" * 127, "k" * 255),
    ],
    ids=["plain", "redelivered-default-exchange", "long-names"],
)
def test_deliver_frames(deliver: commands.Basic.Deliver) -> None:
    assert_decodes_as_pamqp(marshal(deliver, 3))


PROPERTIES = [
    commands.Basic.Properties(),
    commands.Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id="m-1",
        correlation_id="saga-1",
        message_type="OrderPlaced",
        timestamp=datetime(2026, 11, 27, 5, 0, 1, tzinfo=UTC),
        headers={"version": 1, "timestamp_in_ms": 1_764_219_601_250, "causation-id": "c"},
        app_id="fleet.orders",
    ),
    commands.Basic.Properties(
        content_type="text/plain",
        content_encoding="gzip",
        headers={"nested": {"list": [1, "two", 3.5], "flag": True}, "none": None},
        delivery_mode=1,
        priority=9,
        correlation_id="Ünïcode ∑",
        reply_to="amq.rabbitmq.reply-to",
        expiration="60000",
        message_id="",
        timestamp=datetime(1970, 1, 1, tzinfo=UTC),
        message_type="t",
        user_id="guest",
        app_id="a",
    ),
]


@pytest.mark.parametrize("properties", PROPERTIES, ids=["none", "fleet", "every-property"])
@pytest.mark.parametrize("body_size", [0, 289, 2**33])
def test_content_headers(properties: commands.Basic.Properties, body_size: int) -> None:
    assert_decodes_as_pamqp(marshal(ContentHeader(0, body_size, properties), 1))


@pytest.mark.parametrize("seed", range(40))
def test_every_combination_of_properties_reads_as_pamqp_reads_it(seed: int) -> None:
    """Each combination of property flags has its own straight-line reader: a random
    subset of `every-property`'s values (and a timestamp repeated, then changed)."""
    rng = random.Random(seed)
    full = PROPERTIES[2]
    for timestamp in (full.timestamp, full.timestamp, datetime(2030, 1, 1, tzinfo=UTC)):
        chosen = {
            name: getattr(full, name)
            for name in commands.Basic.Properties.__slots__
            if rng.random() < 0.5
        }
        if "timestamp" in chosen:
            chosen["timestamp"] = timestamp
        properties = commands.Basic.Properties(**chosen)
        assert_decodes_as_pamqp(marshal(ContentHeader(0, 7, properties), 1))


def test_a_timestamp_in_milliseconds_is_read_as_pamqp_reads_it() -> None:
    header = marshal(ContentHeader(0, 1, commands.Basic.Properties()), 1)
    # Set the timestamp flag and append a millisecond value by hand.
    payload = bytearray(header[7:-1])
    struct.pack_into(">H", payload, 12, 1 << 6)
    payload += struct.pack(">Q", 1_764_219_601_250)
    data = struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"
    assert_decodes_as_pamqp(data)


@pytest.mark.parametrize("body", [b"{}", b"\xce" * 10_000])
def test_body_frames(body: bytes) -> None:
    assert_decodes_as_pamqp(marshal(ContentBody(body), 2))


def test_an_empty_body_frame_is_refused_as_pamqp_refuses_it() -> None:
    with pytest.raises(PAMQPException, match="No frame size"):
        decode_frame(marshal(ContentBody(b""), 2))


@pytest.mark.parametrize(
    "frame",
    [
        commands.Basic.Ack(5, multiple=True),
        commands.Basic.ConsumeOk("ctag"),
        commands.Channel.Close(404, "NOT_FOUND - no queue 'x'", 50, 10),
    ],
    ids=["ack", "consume-ok", "channel-close"],
)
def test_other_frames_are_pamqps(frame: Any) -> None:
    assert_decodes_as_pamqp(marshal(frame, 1))


def truncated_deliver() -> bytes:
    """A deliver frame whose routing key claims more bytes than the frame holds."""
    good = marshal(commands.Basic.Deliver("c", 1, False, "e", "rk"), 1)
    payload = bytearray(good[7:-1])
    payload[-3] = 200  # the routing key's length
    return struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce"


def test_a_malformed_delivery_is_refused() -> None:
    with pytest.raises(ValueError, match="past the frame"):
        decode_frame(truncated_deliver())


async def test_the_receiver_reports_a_malformed_delivery_as_an_invalid_frame() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(truncated_deliver())
    reader.feed_eof()
    with pytest.raises(InvalidFrameError, match="past the frame"):
        await BufferedFrameReceiver(reader).get_frame()


def content_header(flags: int, encoded: bytes) -> bytes:
    """A content header frame with these property flags and hand-encoded property bytes."""
    payload = struct.pack(">HHQH", 60, 0, 2, flags) + encoded
    return struct.pack(">BHI", 2, 1, len(payload)) + payload + b"\xce"


class TestValuesNoDecoderCanRead:
    """The broker passes properties on as published: a value no decoder can read is
    left out and named in `x-fleet-undecodable`, and the rest of the header is kept."""

    def test_a_timestamp_past_the_range_of_datetime_is_named_and_left_out(self) -> None:
        # Given: a timestamp, then a message id after it
        data = content_header((1 << 7) | (1 << 6), b"\x02id" + struct.pack(">Q", 2**63 - 1))
        # When
        _, _, header = decode_frame(data)
        # Then
        assert header.properties.timestamp is None
        assert header.properties.message_id == "id"
        assert "timestamp" in header.properties.headers[h.UNDECODABLE]

    def test_a_short_string_that_is_not_utf8_is_named_and_left_out(self) -> None:
        # Given: a message id of two bytes that are not UTF-8, then a type
        data = content_header((1 << 7) | (1 << 5), b"\x02\xff\xfe" + b"\x05Probe")
        # When
        _, _, header = decode_frame(data)
        # Then
        assert header.properties.message_id is None
        assert header.properties.message_type == "Probe"
        assert header.properties.headers == {h.UNDECODABLE: "property message_id is not UTF-8"}

    def test_a_header_table_pamqp_cannot_read_is_replaced_by_the_reason(self) -> None:
        # Given: a table holding a timestamp past datetime's range, then a message id
        entry = b"\x04when" + b"T" + struct.pack(">Q", 2**63 - 1)
        table = struct.pack(">I", len(entry)) + entry
        data = content_header((1 << 13) | (1 << 7), table + b"\x02id")
        # When
        _, _, header = decode_frame(data)
        # Then
        assert header.properties.message_id == "id"
        assert list(header.properties.headers) == [h.UNDECODABLE]
        assert header.properties.headers[h.UNDECODABLE].startswith("property headers: ")

    def test_a_routing_key_that_is_not_utf8_is_read_with_replacement_characters(self) -> None:
        # Given
        good = marshal(commands.Basic.Deliver("c", 1, False, "e", "rk"), 1)
        data = good.replace(b"\x02rk", b"\x02\xffk")
        # When
        _, _, deliver = decode_frame(data)
        # Then
        assert deliver.routing_key == "\ufffdk"

    def test_a_header_whose_layout_runs_past_the_frame_is_still_refused(self) -> None:
        # Given: a message id claiming 200 bytes
        data = content_header(1 << 7, b"\xc8id")
        # Then
        with pytest.raises(ValueError, match="past the frame"):
            decode_frame(data)
