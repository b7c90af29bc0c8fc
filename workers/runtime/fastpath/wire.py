"""The bytes of one publish: method, content header and body frames.

pamqp marshals any AMQP frame generically: a Basic.Properties object is walked
attribute by attribute and every value's type is looked up, which made
marshalling a follow-on event the largest single cost of a saga step. fleet's
messages always carry the same properties (its wire format, `Outgoing`), so
`publish_frames` writes them directly, with struct, into one bytes object.
The result is byte for byte what pamqp writes for the same message (the tests
compare both); `publish_frames_for` takes any Basic.Properties through pamqp.

Frame layout (AMQP 0-9-1, section 4.2.3): type (1 byte), channel (2), payload
size (4), payload, 0xCE.
"""

from __future__ import annotations

import struct

from pamqp import encode as pamqp_encode
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from workers.runtime.outgoing import JSON, PERSISTENT, Outgoing

_FRAME_HEADER = struct.Struct(">BHI")
_FRAME_END = b"\xce"
_METHOD, _HEADER, _BODY = 1, 2, 3
# basic.publish: class 60, method 40, then a reserved short (ticket).
_PUBLISH = struct.Struct(">HHH").pack(60, 40, 0)
# Content header of class 60, weight 0, then the body size and the property flags.
_CONTENT = struct.Struct(">HHQH")
_LONG = struct.Struct(">I")
_LONGLONG = struct.Struct(">Q")
_SIGNED_LONGLONG = struct.Struct(">q")

# Property flag bits, most significant first (AMQP 0-9-1 basic class).
_CONTENT_TYPE = 1 << 15
_HEADERS = 1 << 13
_DELIVERY_MODE = 1 << 12
_CORRELATION_ID = 1 << 10
_MESSAGE_ID = 1 << 7
_TIMESTAMP = 1 << 6
_TYPE = 1 << 5
_APP_ID = 1 << 3
#: The properties every fleet message carries, in wire order.
_FLEET_PROPERTIES = (
    _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _CORRELATION_ID | _MESSAGE_ID | _TIMESTAMP | _TYPE
)

_JSON = bytes([len(JSON)]) + JSON.encode()
_PERSISTENT = bytes([PERSISTENT])


def publish_frames(message: Outgoing, channel: int, max_body_frame: int) -> bytes:
    """Every frame of `message`'s publish, as `Outgoing.properties()` describes it.

    Args:
        message: the message.
        channel: the channel number.
        max_body_frame: the largest body frame payload (frame_max minus 8).
    """
    body = message.body
    flags = _FLEET_PROPERTIES | (_APP_ID if message.app_id else 0)
    parts = [
        _CONTENT.pack(60, 0, len(body), flags),
        _JSON,
        field_table(message.headers()),
        _PERSISTENT,
        _short_string(message.correlation_id),
        _short_string(message.message_id),
        _LONGLONG.pack(int(message.timestamp.timestamp())),
        _short_string(message.type),
    ]
    if message.app_id:
        parts.append(_short_string(message.app_id))
    method = _publish_method(message.exchange, message.routing_key, message.mandatory)
    return _frames(channel, method, b"".join(parts), body, max_body_frame)


def publish_frames_for(
    body: bytes,
    *,
    exchange: str,
    routing_key: str,
    properties: Basic.Properties,
    mandatory: bool,
    channel: int,
    max_body_frame: int,
) -> bytes:
    """Every frame of a publish with any properties (pamqp marshals them)."""
    header = ContentHeader(0, len(body), properties).marshal()
    method = _publish_method(exchange, routing_key, mandatory)
    return _frames(channel, method, header, body, max_body_frame)


def _publish_method(exchange: str, routing_key: str, mandatory: bool) -> bytes:
    return b"".join(
        (
            _PUBLISH,
            _short_string(exchange),
            _short_string(routing_key),
            b"\x01" if mandatory else b"\x00",
        )
    )


def _frames(channel: int, method: bytes, header: bytes, body: bytes, max_body_frame: int) -> bytes:
    pieces = [
        _FRAME_HEADER.pack(_METHOD, channel, len(method)),
        method,
        _FRAME_END,
        _FRAME_HEADER.pack(_HEADER, channel, len(header)),
        header,
        _FRAME_END,
    ]
    for start in range(0, len(body), max_body_frame):
        chunk = body[start : start + max_body_frame]
        pieces += (_FRAME_HEADER.pack(_BODY, channel, len(chunk)), chunk, _FRAME_END)
    return b"".join(pieces)


def field_table(values: dict[str, object]) -> bytes:
    """A field table of str and int values, keys sorted as pamqp sorts them."""
    pieces = []
    for key in sorted(values):
        value = values[key]
        pieces.append(_short_string(key))
        if isinstance(value, str):
            encoded = value.encode()
            pieces += (b"S", _LONG.pack(len(encoded)), encoded)
        elif isinstance(value, int) and not isinstance(value, bool):
            pieces.append(_integer(value))
        else:  # not fleet's own headers: let pamqp pick the field type
            pieces.append(pamqp_encode.encode_table_value(value))  # type: ignore[arg-type]
    data = b"".join(pieces)
    return _LONG.pack(len(data)) + data


def _integer(value: int) -> bytes:
    """An int as the smallest field type that holds it, in pamqp's order of preference."""
    if -128 <= value <= 127:
        return b"b" + struct.pack(">b", value)
    if -32768 <= value <= 32767:
        return b"s" + struct.pack(">h", value)
    if 0 <= value <= 65535:
        return b"u" + struct.pack(">H", value)
    if -(2**31) <= value < 2**31:
        return b"I" + struct.pack(">i", value)
    if 0 <= value < 2**32:
        return b"i" + struct.pack(">I", value)
    return b"l" + _SIGNED_LONGLONG.pack(value)


def _short_string(value: str) -> bytes:
    encoded = value.encode()
    if len(encoded) > 255:
        raise ValueError(f"AMQP short string over 255 bytes: {value[:40]!r}...")
    return bytes([len(encoded)]) + encoded
