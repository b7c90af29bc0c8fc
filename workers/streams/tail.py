"""Read a stream's events from an offset, as they arrive, without storing an offset:
the subscription has no reference name, so no consumer's stored offset is touched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rstream import AMQPMessage, ConsumerOffsetSpecification, MessageContext, amqp_decoder
from rstream.constants import OffsetType

from topology.duration import Duration
from workers.streams.connect import StreamEndpoint

_NAMED = {"first": OffsetType.FIRST, "last": OffsetType.LAST, "next": OffsetType.NEXT}


def parse_start(text: str, now_ms: int | None = None) -> ConsumerOffsetSpecification:
    """``first`` | ``last`` (the last chunk) | ``next`` | an offset | a duration back
    from now (``2h``: from the first chunk written in the last two hours).

    Raises:
        ValueError: none of these.
    """
    if text in _NAMED:
        return ConsumerOffsetSpecification(_NAMED[text], None)
    if text.isdigit():
        return ConsumerOffsetSpecification(OffsetType.OFFSET, int(text))
    try:
        back = Duration.parse(text)
    except ValueError:
        raise ValueError(
            f"invalid start {text!r}: write first, last, next, an offset (1234) "
            "or how far back (30m, 2h, 1d)"
        ) from None
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return ConsumerOffsetSpecification(OffsetType.TIMESTAMP, now - back.ms)


@dataclass(frozen=True)
class StreamEvent:
    """One message of a stream, as `fleet stream tail` shows it."""

    offset: int
    timestamp: datetime
    type: str
    message_id: str
    body: bytes


def event_of(message: AMQPMessage, offset: int, timestamp_ms: int) -> StreamEvent:
    """fleet's wire format read back from the AMQP 1.0 form the stream keeps: the 0.9.1
    `type` property becomes the application property x-basic-type; a publisher
    speaking AMQP 1.0 or the stream protocol may set `type` there itself."""
    application = _text_keys(message.application_properties)
    properties = message.properties
    message_id = getattr(properties, "message_id", None) if properties is not None else None
    event_type = application.get("x-basic-type", application.get("type", ""))
    return StreamEvent(
        offset=offset,
        timestamp=datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        type=_text(event_type),
        message_id=_text(message_id or ""),
        body=_body(message.body),
    )


async def tail(
    endpoint: StreamEndpoint,
    stream: str,
    start: ConsumerOffsetSpecification,
    show: Callable[[StreamEvent], None],
    *,
    event_type: str | None = None,
    limit: int | None = None,
    idle: float | None = None,
) -> int:
    """Call `show` with each event from `start` on (only those of `event_type`, if
    given), until `limit` were shown, `idle` seconds pass without one, or forever.
    Returns how many were shown.

    Raises:
        StreamUnavailable: the stream protocol is unreachable or the stream does not exist.
    """
    shown = 0
    done = asyncio.Event()
    arrived = asyncio.Event()

    async def on_message(message: AMQPMessage, context: MessageContext) -> None:
        nonlocal shown
        arrived.set()
        if done.is_set():
            return
        event = event_of(message, context.offset, context.timestamp)
        if event_type is not None and event.type != event_type:
            return
        show(event)
        shown += 1
        if limit is not None and shown >= limit:
            done.set()

    consumer = endpoint.consumer()
    await endpoint.start(consumer)
    try:
        await endpoint.require(consumer, stream)
        # No subscriber_name: the broker stores no offset for this subscription.
        await consumer.subscribe(
            stream, on_message, decoder=amqp_decoder, offset_specification=start
        )
        while not done.is_set():
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), idle)
            except TimeoutError:
                break
    finally:
        await consumer.close()
    return shown


def _text_keys(values: dict[Any, Any] | None) -> dict[str, Any]:
    return {_text(k): v for k, v in (values or {}).items()}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _body(body: object) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, list):  # several data sections
        return b"".join(part if isinstance(part, bytes) else bytes(part) for part in body)
    return str(body).encode()
