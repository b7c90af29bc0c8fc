"""fleet's own reader of stream messages against rstream's decoder, the reference:
the same sections for every value rstream writes, the same Delivery, and rstream's
decoder (or a parked delivery) for whatever the reader leaves aside."""

from __future__ import annotations

import struct
import uuid
from dataclasses import fields
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rstream import AMQPMessage, amqp_decoder
from rstream._pyamqp.message import Header, Properties

from workers.runtime import headers as h
from workers.runtime.delivery import Delivery, read_delivery
from workers.streams import amqp10
from workers.streams.message import read_stream_delivery, stream_delivery

# A message as RabbitMQ 3.10 writes an AMQP 0.9.1 publish into a stream (the bench's).
RABBITMQ = (
    b"\x00Sr\xc1K\x06\xa3\rx-routing-key\xa1\x12bench-stream-drain\xa3\nx-exchange\xa1\x00"
    b"\xa3\x15x-basic-delivery-modeP\x02\x00Ss\xc0?\r\xa1\x0bp-000000000@@@@\xa1\x0bp-0000"
    b"00000\xa3\x10application/json@@\x83\x00\x00\x01\xa2>\xa1\xec\xa8@@@\x00St\xc1'\x04\xa1"
    b"\x0cx-basic-type\xa1\x0bOrderPlaced\xa1\x07versionQ\x02\x00Su\xb0\x00\x00\x00\x0f"
    b'{"order_id":1}'
    b" "
)


def same_sections(data: bytes) -> None:
    """`amqp10.read` returns what rstream's decoder does, section by section."""
    read = amqp10.read(data)
    assert read is not None
    decoded = amqp_decoder(data)
    assert read.annotations == decoded.message_annotations
    assert read.application == decoded.application_properties
    assert read.properties == (list(decoded.properties) if decoded.properties else None)
    assert read.body == decoded.body


def described(section: int, value: bytes) -> bytes:
    return b"\x00\x53" + bytes([section]) + value


def application(*pairs: bytes) -> bytes:
    """An application-properties section (map32) of encoded key-value pairs."""
    payload = b"".join(pairs)
    size = struct.pack(">II", len(payload) + 4, 2 * len(pairs))
    return described(0x74, b"\xd1" + size + payload)


def sym(text: str) -> bytes:
    return b"\xa3" + bytes([len(text)]) + text.encode()


DATA = described(0x75, b"\xa0\x02{}")


def view(delivery: Delivery) -> dict[str, Any]:
    """Every field of a delivery and of the 0.9.1 message it carries."""
    properties = delivery.message.header.properties
    deliver = delivery.message.delivery
    return {
        **{f.name: getattr(delivery, f.name) for f in fields(delivery) if f.name != "message"},
        "properties": {name: getattr(properties, name) for name in properties.__slots__},
        "deliver": {name: getattr(deliver, name) for name in deliver.__slots__},
        "body": delivery.message.body,
        "body_size": delivery.message.header.body_size,
        "class_id": delivery.message.header.class_id,
    }


def both(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The delivery read by fleet's reader and by rstream's decoder; each is also what
    the queue workers' `read_delivery` reads from its 0.9.1 message."""
    where = {"stream": "s-0", "offset": 7, "timestamp_ms": 1_700_000_000_000}
    fast = read_stream_delivery(data, **where)  # type: ignore[arg-type]
    reference = stream_delivery(amqp_decoder(data), **where)  # type: ignore[arg-type]
    assert view(read_delivery(fast.message)) == view(fast)
    assert view(read_delivery(reference.message)) == view(reference)
    return view(fast), view(reference)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=300)
    | st.uuids(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.none() | st.text(max_size=40) | st.binary(max_size=40) | st.uuids() | st.integers(0, 2**63)


class TestSections:
    def test_the_message_rabbitmq_writes_for_a_0_9_1_publish(self) -> None:
        same_sections(RABBITMQ)
        assert amqp10.read(RABBITMQ).body == b'{"order_id":1} '  # type: ignore[union-attr]

    @settings(max_examples=300, deadline=None)
    @given(
        props=st.dictionaries(st.text(max_size=20), values, max_size=8),
        annotations=st.dictionaries(st.binary(min_size=1, max_size=20), values, max_size=4),
        message_id=ids,
        correlation_id=ids,
        body=st.binary(min_size=1, max_size=2000),  # rstream writes no data section for b""
    )
    def test_every_value_rstream_writes_reads_back_as_rstream_reads_it(
        self,
        props: dict[str, Any],
        annotations: dict[bytes, Any],
        message_id: Any,
        correlation_id: Any,
        body: bytes,
    ) -> None:
        message = AMQPMessage(
            body=body,
            header=Header(durable=True),
            properties=Properties(
                message_id=message_id,
                correlation_id=correlation_id,
                content_type=b"application/json",
                creation_time=1_700_000_000_000,
            ),
            application_properties=props,
            message_annotations=annotations,
            footer={"checksum": 1} if len(body) % 2 else None,
        )
        data = bytes(message)
        same_sections(data)
        fast, reference = both(data)
        assert fast == reference

    def test_wide_and_fixed_width_encodings(self) -> None:
        """Encodings rstream's encoder never picks but other writers do: 32-bit text,
        symbols, lists and maps, every unsigned width, a timestamp, a described value."""
        pairs = [
            sym("str32") + b"\xb1" + struct.pack(">I", 3) + b"abc",
            sym("sym32") + b"\xb3" + struct.pack(">I", 2) + b"xy",
            sym("ubyte") + b"\x50\xff",
            sym("ushort") + b"\x60\xff\xfe",
            sym("uint") + b"\x70" + struct.pack(">I", 2**32 - 1),
            sym("uint0") + b"\x43",
            sym("smalluint") + b"\x52\x09",
            sym("ulong") + b"\x80" + struct.pack(">Q", 2**64 - 1),
            sym("ulong0") + b"\x44",
            sym("short") + b"\x61" + struct.pack(">h", -300),
            sym("smallint") + b"\x54\xfe",
            sym("timestamp") + b"\x83" + struct.pack(">q", 1_700_000_000_000),
            sym("boolean") + b"\x56\x01",
            sym("list0") + b"\x45",
            sym("list32") + b"\xd0" + struct.pack(">II", 7, 2) + b"\x40\x52\x01",
            sym("map32") + b"\xd1" + struct.pack(">II", 9, 2) + sym("k") + b"\x52\x02",
            sym("described") + b"\x00\xa3\x03urn\xa1\x01v",
            sym("outcome") + b"\x00\x53\x24\x45",
        ]
        data = application(*pairs) + described(0x75, b"\xb0" + struct.pack(">I", 2) + b"{}")
        same_sections(data)
        fast, reference = both(data)
        assert fast == reference
        assert fast["headers"]["str32"] == "abc"
        assert fast["headers"]["outcome"] == {"accepted": []}

    def test_what_it_leaves_to_rstream_reads_as_rstream_reads_it(self) -> None:
        """An array, or a message without a data section: rstream's decoder."""
        array = sym("tags") + b"\xe0\x05\x02\xa1\x01a\x01b"  # array8 of two str8
        empty = bytes(AMQPMessage(body=b"", properties=Properties(message_id=b"m")))
        for data in (application(array) + DATA, described(0x77, b"\xa1\x02hi"), empty):
            assert amqp10.read(data) is None
            fast, reference = both(data)
            assert fast == reference
        assert both(application(array) + DATA)[0]["headers"]["tags"] == [b"a", b"b"]
        assert both(empty)[0]["body"] == b""


class TestUnreadable:
    def test_bytes_neither_reader_can_decode_become_a_delivery_that_says_why(self) -> None:
        """Today's rstream would log the error and drop the rest of the chunk; the
        worker parks the message instead (the consumer parks what is undecodable)."""
        data = application(sym("price") + b"\x74\x00\x00\x00\x01") + DATA  # decimal32
        assert amqp10.read(data) is None
        delivery = read_stream_delivery(data, stream="s-0", offset=3)
        assert delivery.undecodable is not None
        assert "AMQP 1.0" in delivery.undecodable
        assert delivery.body == data
        assert delivery.headers[h.STREAM_OFFSET] == 3

    def test_a_value_running_past_the_message_is_left_to_rstream(self) -> None:
        truncated = RABBITMQ[:-5]
        assert amqp10.read(truncated) is None
        assert amqp10.read(RABBITMQ + b"\x00") is None

    def test_a_uuid_id_reads_as_its_text(self) -> None:
        value = uuid.UUID(int=5)
        message = AMQPMessage(body=b"{}", properties=Properties(message_id=value))
        delivery = read_stream_delivery(bytes(message), stream="s", offset=0)
        assert delivery.message_id == str(value)
