"""A stream message → the same `Delivery` a queue's consumer reads, so the handler
stage and the dead-letter copies serve streams unchanged.

RabbitMQ keeps a message published over AMQP 0.9.1 in its AMQP 1.0 form: the
properties `type` and `app_id` become the application properties x-basic-type and
x-basic-app-id, the headers the other application properties, exchange and routing
key message annotations. This reads them back into 0.9.1's properties.
"""

from __future__ import annotations

from typing import Any, cast

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader
from rstream import AMQPMessage

from workers.runtime import headers as h
from workers.runtime.delivery import Delivery, read_delivery
from workers.streams.tail import _body, _text

_BASIC = "x-basic-"


def stream_delivery(
    message: AMQPMessage, *, stream: str, offset: int, timestamp_ms: int | None = None
) -> Delivery:
    """The delivery of one stream message; never raises (what cannot be read is
    left out, and the handler stage parks what it cannot decode)."""
    application = {_text(k): _value(v) for k, v in (message.application_properties or {}).items()}
    annotations = {_text(k): _value(v) for k, v in (message.message_annotations or {}).items()}
    properties = message.properties
    headers = {k: v for k, v in application.items() if not k.startswith(_BASIC)}
    # Where it was read: the handler sees it in ctx.headers, a parked copy keeps it.
    headers[h.STREAM], headers[h.STREAM_OFFSET] = stream, offset
    if timestamp_ms is not None:  # when the broker wrote its chunk: the same on every read
        headers[h.STREAM_TIMESTAMP] = timestamp_ms
    body = _body(message.body)
    basic = Basic.Properties(
        content_type=_opt(getattr(properties, "content_type", None)),
        content_encoding=_opt(getattr(properties, "content_encoding", None)),
        headers=headers,
        delivery_mode=2,
        correlation_id=_opt(getattr(properties, "correlation_id", None)),
        message_id=_opt(getattr(properties, "message_id", None)),
        message_type=_opt(application.get(_BASIC + "type")),
        app_id=_opt(application.get(_BASIC + "app-id")),
    )
    deliver = Basic.Deliver(
        consumer_tag=stream,
        delivery_tag=offset,
        redelivered=False,
        exchange=_opt(annotations.get("x-exchange")) or "",
        routing_key=_opt(annotations.get("x-routing-key")) or stream,
    )
    header = ContentHeader(body_size=len(body), properties=basic)
    # No channel: nothing is acked on a stream; the copies go out on the publisher's.
    delivered = DeliveredMessage(
        delivery=deliver, header=header, body=body, channel=cast(AbstractChannel, None)
    )
    return read_delivery(delivered)


def _value(value: Any) -> Any:
    """AMQP 1.0 binary and symbol values as text, the way 0.9.1 headers read."""
    return _text(value) if isinstance(value, bytes) else value


def _opt(value: object) -> str | None:
    return None if value is None else _text(value)
