"""A stream message → the same `Delivery` a queue's consumer reads, so the handler
stage and the dead-letter copies serve streams unchanged.

RabbitMQ keeps a message published over AMQP 0.9.1 in its AMQP 1.0 form: the
properties `type` and `app_id` become the application properties x-basic-type and
x-basic-app-id, the headers the other application properties, exchange and routing
key message annotations. This reads them back into 0.9.1's properties.

A worker reads the raw bytes (`read_stream_delivery`): its own reader
(`amqp10.read`) takes the sections, and only a message it leaves aside goes
through rstream's decoder. Both end in the same values, so in the same Delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from rstream import AMQPMessage, amqp_decoder

from contracts import derive_message_id
from workers.runtime import headers as h
from workers.runtime.delivery import Delivery, clean_id, count, version_of
from workers.streams import amqp10
from workers.streams.tail import _body

_BASIC = "x-basic-"
_BASIC_TYPE, _BASIC_APP_ID = _BASIC + "type", _BASIC + "app-id"
# Indexes of the AMQP 1.0 properties fleet reads (`rstream.Properties` order).
_MESSAGE_ID, _CORRELATION_ID, _CONTENT_TYPE, _CONTENT_ENCODING = 0, 5, 6, 7
_NO_PROPERTIES: tuple[None, ...] = (None,) * 13
# The annotations read, as rstream has their keys (bytes) or a caller wrote them.
_EXCHANGE = frozenset({b"x-exchange", "x-exchange"})
_ROUTING_KEY = frozenset({b"x-routing-key", "x-routing-key"})
# fleet's headers, looked up once (every message reads them).
_STREAM, _STREAM_OFFSET, _STREAM_TIMESTAMP = h.STREAM, h.STREAM_OFFSET, h.STREAM_TIMESTAMP
_UNDECODABLE, _CAUSATION_ID, _ATTEMPTS = h.UNDECODABLE, h.CAUSATION_ID, h.ATTEMPTS
_RETRIES, _DELIVERIES = h.RETRIES, h.DELIVERIES
_new = object.__new__
_DECODE = bytes.decode


def stream_delivery(
    message: AMQPMessage, *, stream: str, offset: int, timestamp_ms: int | None = None
) -> Delivery:
    """The delivery of one stream message as rstream decoded it; never raises (what
    cannot be read is left out, and the handler stage parks what it cannot decode)."""
    return _delivery(
        message.message_annotations,
        message.properties or _NO_PROPERTIES,
        message.application_properties,
        b"" if message.body is None else _body(message.body),  # no data section: no body
        stream,
        offset,
        timestamp_ms,
    )


def read_stream_delivery(
    data: bytes, *, stream: str, offset: int, timestamp_ms: int | None = None
) -> Delivery:
    """The delivery of one stream message's bytes; never raises: a message neither
    reader can decode is a delivery of those bytes that says why
    (`x-fleet-undecodable`), which the consumer parks."""
    sections = amqp10.read(data)
    if sections is not None:
        return _delivery(
            sections.annotations,
            sections.properties or _NO_PROPERTIES,
            sections.application,
            cast(bytes, sections.body),
            stream,
            offset,
            timestamp_ms,
        )
    try:
        message = amqp_decoder(data)
    except Exception as error:  # rstream's decoder raises all sorts on bytes it cannot read
        reason = f"the message is not AMQP 1.0 this worker can read: {type(error).__name__}"
        return _delivery(
            None, _NO_PROPERTIES, {h.UNDECODABLE: reason}, data, stream, offset, timestamp_ms
        )
    return stream_delivery(message, stream=stream, offset=offset, timestamp_ms=timestamp_ms)


def _delivery(
    annotations: dict[Any, Any] | None,
    properties: Sequence[Any],
    application_properties: dict[Any, Any] | None,
    body: bytes,
    stream: str,
    offset: int,
    timestamp_ms: int | None,
) -> Delivery:
    headers: dict[str, Any] = {}
    message_type = app_id = None
    if application_properties:
        for key, value in application_properties.items():
            name = _DECODE(key, "utf-8", "replace") if type(key) is bytes else str(key)
            if type(value) is bytes:
                value = _DECODE(value, "utf-8", "replace")
            if not name.startswith(_BASIC):
                headers[name] = value
            elif name == _BASIC_TYPE:
                message_type = _opt(value)
            elif name == _BASIC_APP_ID:
                app_id = _opt(value)
    exchange = routing_key = None
    if annotations:
        for key, value in annotations.items():
            if key in _EXCHANGE:
                exchange = _opt(value)
            elif key in _ROUTING_KEY:
                routing_key = _opt(value)
    # Where it was read: the handler sees it in ctx.headers, a parked copy keeps it.
    headers[_STREAM], headers[_STREAM_OFFSET] = stream, offset
    if timestamp_ms is not None:  # when the broker wrote its chunk: the same on every read
        headers[_STREAM_TIMESTAMP] = timestamp_ms
    # pamqp's objects built without their constructors' checks (the values are ours).
    basic: Basic.Properties = _new(Basic.Properties)
    basic.content_type = _opt(properties[_CONTENT_TYPE])
    basic.content_encoding = _opt(properties[_CONTENT_ENCODING])
    basic.headers = headers
    basic.delivery_mode = 2
    basic.priority = None
    basic.correlation_id = _opt(properties[_CORRELATION_ID])
    basic.reply_to = None
    basic.expiration = None
    basic.message_id = _opt(properties[_MESSAGE_ID])
    basic.timestamp = None
    basic.message_type = message_type
    basic.user_id = None
    basic.app_id = app_id
    basic.cluster_id = ""
    deliver: Basic.Deliver = _new(Basic.Deliver)
    deliver.consumer_tag = stream
    deliver.delivery_tag = offset
    deliver.redelivered = False
    deliver.exchange = exchange or ""
    deliver.routing_key = routing_key or stream
    header: ContentHeader = _new(ContentHeader)
    header.class_id, header.weight, header.body_size = None, 0, len(body)
    header.properties = basic
    # No channel: nothing is acked on a stream; the copies go out on the publisher's.
    delivered = DeliveredMessage(deliver, header, body, cast(AbstractChannel, None))
    # What `read_delivery` reads, from the values at hand (the tests compare both).
    message_id = clean_id(basic.message_id) or derive_message_id(
        message_type or deliver.routing_key, body
    )
    undecodable = headers.get(_UNDECODABLE)
    # Positional, in field order: a frozen dataclass's keyword call costs a third
    # more, here a tenth of the reading.
    return Delivery(
        delivered,  # message
        offset,  # tag
        False,  # redelivered
        deliver.exchange,
        deliver.routing_key,
        headers,
        message_type or None,  # type_name
        version_of(headers),
        message_id,
        clean_id(basic.correlation_id) or message_id,
        clean_id(headers.get(_CAUSATION_ID)),
        count(headers.get(_ATTEMPTS)),
        count(headers.get(_RETRIES)),
        count(headers[_DELIVERIES]) if _DELIVERIES in headers else None,
        undecodable if isinstance(undecodable, str) else None,
    )


def _opt(value: object) -> str | None:
    """A property as text: rstream reads text as bytes; ids may be numbers or UUIDs."""
    if value is None:
        return None
    return _DECODE(value, "utf-8", "replace") if type(value) is bytes else str(value)
