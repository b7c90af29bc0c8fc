"""Decoding the three frames of every delivery, faster than pamqp does.

pamqp decodes any frame generically: it builds the method object with its
defaults and validation, then walks its attributes, looking each one's type up
by name; a content header's properties go the same way. For a consumer that is
about 16 us of every delivery, a quarter of the drain's message path. A
delivery is always the same three frames: Basic.Deliver, a content header and
its body; `decode_frame` decodes those directly with struct into the very
objects pamqp returns (the tests compare both, attribute by attribute), and
hands every other frame to pamqp.

Frame layout (AMQP 0-9-1, section 4.2.3): type (1 byte), channel (2), payload
size (4), payload, 0xCE. The caller has checked the size and the end octet.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

import pamqp.frame
from pamqp import decode
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from workers.runtime.headers import UNDECODABLE

_FRAME_HEADER = struct.Struct(">BHI")
_METHOD, _HEADER, _BODY = 1, 2, 3
_DELIVER = Basic.Deliver.index  # class 60, method 60
_INDEX = struct.Struct(">I")
_LONGLONG = struct.Struct(">Q")
_TABLE_SIZE = struct.Struct(">I")
# Content header: class id, weight, body size, property flags.
_CONTENT = struct.Struct(">HHQH")
_PAYLOAD = 7  # where the payload starts

_SHORTSTR, _TABLE, _OCTET, _TIMESTAMP = range(4)
_KINDS = {"shortstr": _SHORTSTR, "table": _TABLE, "octet": _OCTET, "timestamp": _TIMESTAMP}
#: Every property in wire order: its name, its flag bit, its kind, pamqp's value when absent.
_PROPERTIES: list[tuple[str, int, int, Any]] = [
    (
        name,
        Basic.Properties.flags[name],
        _KINDS[getattr(Basic.Properties, "_" + name)],
        getattr(Basic.Properties(), name),
    )
    for name in Basic.Properties.__slots__
]
_new = object.__new__
_from_timestamp = datetime.datetime.fromtimestamp
_UTC = datetime.UTC


def decode_frame(data: bytes) -> tuple[int, int, Any]:
    """(bytes used, channel, frame) of one complete frame, as `pamqp.frame.unmarshal`.

    Raises:
        ValueError, struct.error, IndexError: a malformed delivery frame.
        pamqp.exceptions.PAMQPException: any other malformed frame.
    """
    kind, channel, size = _FRAME_HEADER.unpack_from(data)
    end = _PAYLOAD + size
    if kind == _BODY and size:
        return end + 1, channel, ContentBody(data[_PAYLOAD:end])
    if kind == _HEADER:
        return end + 1, channel, content_header(data, end)
    if kind == _METHOD and size >= 4 and _INDEX.unpack_from(data, _PAYLOAD)[0] == _DELIVER:
        return end + 1, channel, deliver(data, end)
    return pamqp.frame.unmarshal(data)


def deliver(data: bytes | bytearray, end: int, start: int = 0) -> Basic.Deliver:
    """The Basic.Deliver frame at `start` of `data`, whose end octet is at `end`."""
    frame: Basic.Deliver = _new(Basic.Deliver)
    offset = start + _PAYLOAD + 4
    stop = offset + 1 + data[offset]
    frame.consumer_tag = data[offset + 1 : stop].decode()
    frame.delivery_tag = _LONGLONG.unpack_from(data, stop)[0]
    frame.redelivered = bool(data[stop + 8] & 1)
    # The broker passes routing keys on as the publisher wrote them: text that
    # is not UTF-8 is read with replacement characters, never refused.
    offset = stop + 9
    stop = offset + 1 + data[offset]
    frame.exchange = data[offset + 1 : stop].decode("utf-8", "replace")
    offset = stop
    stop = offset + 1 + data[offset]
    frame.routing_key = data[offset + 1 : stop].decode("utf-8", "replace")
    if stop > end:
        raise ValueError("basic.deliver runs past the frame")
    return frame


def content_header(data: bytes | bytearray, end: int, start: int = 0) -> ContentHeader:
    """The content header frame at `start` of `data` (its end octet at `end`): read
    by the straight-line reader for its property flags; when that meets anything it
    does not expect, by `_tolerant_header`."""
    class_id, weight, body_size, flags = _CONTENT.unpack_from(data, start + _PAYLOAD)
    try:
        properties, offset = _reader_for(flags)(data, start + _PAYLOAD + _CONTENT.size, end)
    except Exception:  # a value to tolerate, or a broken frame: the careful reader says which
        return _tolerant_header(bytes(data[start : end + 1]), end - start)
    if offset > end:
        return _tolerant_header(bytes(data[start : end + 1]), end - start)
    return _header(class_id, weight, body_size, properties)


@cache
def _reader_for(
    flags: int,
) -> Callable[[bytes | bytearray, int, int], tuple[Basic.Properties, int]]:
    """A function that reads exactly the properties `flags` names, in wire order, with
    no branch per property: about a third of the generic loop's time. It raises on
    any value the strict reading refuses (text that is not UTF-8, a timestamp out
    of range, a malformed table); `_tolerant_header` then reads the frame.

    Flags are a 16-bit field, so at most a few distinct readers ever exist (one per
    property combination publishers use)."""
    lines = ["def read(data, offset, end):", "    p = _new(_Properties)"]
    for name, bit, kind, absent in _PROPERTIES:
        if not flags & bit:
            value = "None" if absent is None else f"_ABSENT[{name!r}]"
            lines.append(f"    p.{name} = {value}")
        elif kind == _SHORTSTR:
            lines += [
                "    stop = offset + 1 + data[offset]",
                f"    p.{name} = data[offset + 1 : stop].decode()",
                "    offset = stop",
            ]
        elif kind == _TABLE:
            lines += [
                f"    used, p.{name} = _field_table(bytes(data[offset:end]))",  # pamqp: bytes
                "    offset += used",
            ]
        elif kind == _OCTET:
            lines += [f"    p.{name} = data[offset]", "    offset += 1"]
        else:
            lines += [
                "    seconds = _LONGLONG.unpack_from(data, offset)[0]",
                "    offset += 8",
                # Deliveries in a burst share their second: the last one's datetime
                # (immutable) is reused rather than built again.
                "    if seconds != _last[0]:",
                "        _last[1] = _from_timestamp(",
                "            seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds, tz=_UTC",
                "        )",
                "        _last[0] = seconds",
                f"    p.{name} = _last[1]",
            ]
    lines.append("    return p, offset")
    namespace: dict[str, Any] = {
        "_new": _new,
        "_Properties": Basic.Properties,
        "_ABSENT": {name: absent for name, _, _, absent in _PROPERTIES},
        "_field_table": decode.field_table,
        "_LONGLONG": _LONGLONG,
        "_from_timestamp": _from_timestamp,
        "_UTC": _UTC,
        "_last": [None, None],  # (seconds, datetime) of the last timestamp read
    }
    exec("\n".join(lines), namespace)  # the code built above, from fixed pieces
    reader: Callable[[bytes | bytearray, int, int], tuple[Basic.Properties, int]] = namespace[
        "read"
    ]
    return reader


def _tolerant_header(data: bytes, end: int) -> ContentHeader:
    """A content header, whatever values its publisher wrote.

    The broker passes properties on as they were published, so a value pamqp
    cannot decode (text that is not UTF-8, a timestamp past what datetime
    holds, a malformed header table) must not break the connection: it would
    come back on every redelivery. Such a value is left out, and the headers
    say what was wrong (`x-fleet-undecodable`); the consumer parks the message.
    Only a frame whose layout is broken is refused.
    """
    class_id, weight, body_size, flags = _CONTENT.unpack_from(data, _PAYLOAD)
    properties: Basic.Properties = _new(Basic.Properties)
    offset = _PAYLOAD + _CONTENT.size
    problems: list[str] = []
    value: Any
    for name, bit, kind, absent in _PROPERTIES:
        if not flags & bit:
            value = absent
        elif kind == _SHORTSTR:
            try:
                value, offset = _short_string(data, offset)
            except UnicodeDecodeError:
                _, offset = _short_string(data, offset, "replace")
                problems.append(f"property {name} is not UTF-8")
                value = absent
        elif kind == _TABLE:
            size = _TABLE_SIZE.unpack_from(data, offset)[0]
            try:
                used, value = decode.field_table(data[offset:end])
            except Exception as error:  # pamqp raises all sorts on a hostile table
                problems.append(f"property {name}: {type(error).__name__}: {error}"[:200])
                used, value = 4 + size, absent
            offset += used
        elif kind == _OCTET:
            value = data[offset]
            offset += 1
        else:
            seconds = _LONGLONG.unpack_from(data, offset)[0]
            offset += 8
            try:
                # pamqp reads anything past the year 2106 as milliseconds.
                value = _from_timestamp(
                    seconds / 1000.0 if seconds > 0xFFFFFFFF else seconds, tz=_UTC
                )
            except (ValueError, OverflowError, OSError):
                problems.append(f"property {name} {seconds} is out of range")
                value = absent
        setattr(properties, name, value)
    if offset > end:
        raise ValueError("content header properties run past the frame")
    if problems:
        headers = properties.headers if isinstance(properties.headers, dict) else {}
        properties.headers = {**headers, UNDECODABLE: "; ".join(problems)}
    return _header(class_id, weight, body_size, properties)


def _header(
    class_id: Any,  # pamqp declares it a class attribute of None
    weight: int,
    body_size: int,
    properties: Basic.Properties,
) -> ContentHeader:
    """pamqp's ContentHeader, without its constructor's defaults and checks."""
    header: ContentHeader = _new(ContentHeader)
    header.class_id = class_id
    header.weight = weight
    header.body_size = body_size
    header.properties = properties
    return header


def _short_string(data: bytes, offset: int, errors: str = "strict") -> tuple[str, int]:
    end = offset + 1 + data[offset]
    if end > len(data):
        raise ValueError("short string runs past the frame")
    return data[offset + 1 : end].decode("utf-8", errors), end
