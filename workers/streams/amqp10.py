"""A stream message's AMQP 1.0 sections, read faster than rstream's generic decoder.

rstream's `amqp_decoder` decodes every value through a table of functions, each
slicing a new memoryview and copying its bytes, then builds its Message and
AMQPMessage classes: about 20 us of a stream worker's ~50 us per message, more
than the handler stage. A message RabbitMQ wrote from an AMQP 0.9.1 publish is
always the same few sections of a few simple types (text, symbols, small
integers, a timestamp, a data body); `read` walks those by index in one pass and
returns exactly the values rstream would (text as bytes, as rstream has it; the
tests compare both on every type).

Anything else (arrays, decimals, chars, a section described other than by a small
ulong, no data body) makes `read` return None, and the caller decodes the message
with rstream's own decoder: the library stays the reference.

Section and type codes: AMQP 1.0, part 3 (messaging) and part 1 (types).
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

_SMALL_ULONG = 0x53
_ANNOTATIONS, _PROPERTIES, _APPLICATION, _DATA = 0x72, 0x73, 0x74, 0x75
_HEADER, _DELIVERY_ANNOTATIONS, _FOOTER = 0x70, 0x71, 0x78
#: The sections read, or skipped, here; any other (sequence, value) goes to rstream.
_KNOWN = frozenset({_HEADER, _DELIVERY_ANNOTATIONS, _ANNOTATIONS, _PROPERTIES, _APPLICATION})
_PROPERTY_FIELDS = 13  # message-id … reply-to-group-id
#: rstream's decoder names these outcome descriptors (never in a message; kept for equality).
_COMPOSITES = {35: "received", 36: "accepted", 37: "rejected", 38: "released", 39: "modified"}

_U16, _I16 = struct.Struct(">H"), struct.Struct(">h")
_U32, _I32 = struct.Struct(">I"), struct.Struct(">i")
_U64, _I64 = struct.Struct(">Q"), struct.Struct(">q")
_F32, _F64 = struct.Struct(">f"), struct.Struct(">d")
_I8 = struct.Struct(">b")
#: Fixed-width numbers: code → (struct, width).
_NUMBERS: dict[int, tuple[struct.Struct, int]] = {
    0x51: (_I8, 1),  # byte
    0x54: (_I8, 1),  # smallint
    0x55: (_I8, 1),  # smalllong
    0x60: (_U16, 2),  # ushort
    0x61: (_I16, 2),  # short
    0x70: (_U32, 4),  # uint
    0x71: (_I32, 4),  # int
    0x72: (_F32, 4),  # float
    0x80: (_U64, 8),  # ulong
    0x81: (_I64, 8),  # long
    0x82: (_F64, 8),  # double
    0x83: (_I64, 8),  # timestamp: ms since the epoch, as rstream returns it
}
_CONSTANTS: dict[int, Any] = {0x40: None, 0x41: True, 0x42: False, 0x43: 0, 0x44: 0}
_UNSIGNED_BYTE = frozenset({0x50, 0x52, 0x53})  # ubyte, smalluint, smallulong


class Unsupported(Exception):
    """A type or layout this reader leaves to rstream's decoder."""


class Sections:
    """What a stream worker reads of a message, as rstream's decoder returns it."""

    __slots__ = ("annotations", "application", "body", "properties")

    def __init__(self) -> None:
        self.annotations: dict[Any, Any] | None = None
        #: The properties' 13 fields, None where absent.
        self.properties: list[Any] | None = None
        self.application: dict[Any, Any] | None = None
        self.body: bytes | None = None


def read(data: bytes) -> Sections | None:
    """The sections of one message; None when rstream's decoder must read it."""
    try:
        return _sections(data)
    except Exception:  # Unsupported, or bytes it cannot walk (an unhashable map key, …)
        return None


def _sections(data: bytes) -> Sections:
    found = Sections()
    end = len(data)
    i = 0
    while i < end:
        if data[i] != 0 or data[i + 1] != _SMALL_ULONG:
            raise Unsupported("a section not described by a small ulong")
        section, code, i = data[i + 2], data[i + 3], i + 4
        if section == _DATA:
            # rstream keeps the last data section of several as the body: so does this.
            found.body, i = _binary(code, data, i)
            continue
        if section not in _KNOWN and section != _FOOTER:
            raise Unsupported(f"section {section:#x}")
        value: Any
        if code == 0xC1:  # the usual map8 and list8, without `_value`'s tests
            value, i = _map(data[i + 1] // 2, data, i + 2)
        elif code == 0xC0:
            value, i = _list(data[i + 1], data, i + 2)
        else:
            value, i = _value(code, data, i)
        if section == _ANNOTATIONS:
            found.annotations = value
        elif section == _PROPERTIES:
            if not isinstance(value, list) or len(value) > _PROPERTY_FIELDS:
                raise Unsupported("properties that are not a list of up to 13 fields")
            found.properties = value + [None] * (_PROPERTY_FIELDS - len(value))
        elif section == _APPLICATION:
            found.application = value
    if i != end:
        raise Unsupported("a value runs past the message")
    if found.body is None:
        raise Unsupported("no data section")
    return found


def _binary(code: int, data: bytes, i: int) -> tuple[bytes, int]:
    if code == 0xA0:
        end = i + 1 + data[i]
        return data[i + 1 : end], end
    if code == 0xB0:
        end = i + 4 + _U32.unpack_from(data, i)[0]
        return data[i + 4 : end], end
    raise Unsupported(f"a data section of type {code:#x}")


# A value that runs past the message ends past it: `_sections` refuses that at the
# end, so the readers below slice without checking each length.


def _value(code: int, data: bytes, i: int) -> tuple[Any, int]:
    """The value of type `code` whose encoding starts at `i`, and where it ends."""
    if code == 0xA1 or code == 0xA3 or code == 0xA0:  # str8, sym8, vbin8: bytes, as rstream
        end = i + 1 + data[i]
        return data[i + 1 : end], end
    if code in _CONSTANTS:
        return _CONSTANTS[code], i
    if code in _UNSIGNED_BYTE:
        return data[i], i + 1
    number = _NUMBERS.get(code)
    if number is not None:
        layout, width = number
        return layout.unpack_from(data, i)[0], i + width
    if code == 0xC1 or code == 0xD1:  # map8, map32
        if code == 0xC1:
            count, i = data[i + 1], i + 2
        else:
            count, i = _U32.unpack_from(data, i + 4)[0], i + 8
        return _map(count // 2, data, i)
    if code == 0xC0 or code == 0xD0:  # list8, list32
        if code == 0xC0:
            count, i = data[i + 1], i + 2
        else:
            count, i = _U32.unpack_from(data, i + 4)[0], i + 8
        return _list(count, data, i)
    if code == 0x45:  # list0
        return [], i
    if code == 0xB1 or code == 0xB3 or code == 0xB0:  # str32, sym32, vbin32
        end = i + 4 + _U32.unpack_from(data, i)[0]
        return data[i + 4 : end], end
    if code == 0x56:  # boolean
        return data[i] == 1, i + 1
    if code == 0x98:  # uuid
        return uuid.UUID(bytes=data[i : i + 16]), i + 16
    if code == 0x00:  # a described value: its descriptor, then the value
        descriptor, i = _value(data[i], data, i + 1)
        value, i = _value(data[i], data, i + 1)
        if type(descriptor) is int and descriptor in _COMPOSITES:
            return {_COMPOSITES[descriptor]: value}, i
        return value, i
    raise Unsupported(f"type {code:#x}")


# Maps and lists read short text and null in line: nearly every value of a message is one.


def _map(pairs: int, data: bytes, i: int) -> tuple[dict[Any, Any], int]:
    mapping: dict[Any, Any] = {}
    key: Any
    value: Any
    for _ in range(pairs):
        code = data[i]
        if code == 0xA3 or code == 0xA1:
            end = i + 2 + data[i + 1]
            key, i = data[i + 2 : end], end
        else:
            key, i = _value(code, data, i + 1)
        code = data[i]
        if code == 0xA1 or code == 0xA3 or code == 0xA0:
            end = i + 2 + data[i + 1]
            value, i = data[i + 2 : end], end
        elif code == 0x40:
            value, i = None, i + 1
        elif code == 0x50:  # ubyte: x-basic-delivery-mode
            value, i = data[i + 1], i + 2
        elif code == 0x51:  # byte: a small header value (`version`)
            value, i = _I8.unpack_from(data, i + 1)[0], i + 2
        else:
            value, i = _value(code, data, i + 1)
        mapping[key] = value
    return mapping, i


def _list(count: int, data: bytes, i: int) -> tuple[list[Any], int]:
    items: list[Any] = [None] * count
    for n in range(count):
        code = data[i]
        if code == 0x40:
            i += 1
        elif code == 0xA1 or code == 0xA3 or code == 0xA0:
            end = i + 2 + data[i + 1]
            items[n], i = data[i + 2 : end], end
        elif code == 0x83:  # timestamp: creation-time
            items[n], i = _I64.unpack_from(data, i + 1)[0], i + 9
        else:
            items[n], i = _value(code, data, i + 1)
    return items, i
