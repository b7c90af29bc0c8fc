"""A follow-on event ready to publish: its bytes and properties, fixed once.

Handlers' results become Outgoing messages before anything is published, so
the inbox can store them with the processed mark and publish exactly the same
messages again if the process died between commit and confirm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from pamqp.commands import Basic

from contracts import Event, encode
from workers.runtime import headers as h

JSON = "application/json"
PERSISTENT = 2


class Outgoing(msgspec.Struct, frozen=True, array_like=True):
    """One message to publish, with everything its AMQP properties need."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str
    causation_id: str | None
    type: str
    version: int
    mandatory: bool
    timestamp: datetime
    app_id: str | None = None
    # W3C trace context (traceparent, tracestate) of the span that caused it.
    trace: dict[str, str] | None = None

    def headers(self) -> dict[str, object]:
        """The version header, the causation id, the publish time in ms and the
        trace context."""
        headers: dict[str, object] = {
            h.VERSION: self.version,
            h.TIMESTAMP_MS: int(self.timestamp.timestamp() * 1000),
        }
        if self.causation_id is not None:
            headers[h.CAUSATION_ID] = self.causation_id
        if self.trace:
            headers.update(self.trace)
        return headers

    def properties(self) -> Basic.Properties:
        """fleet's wire format: JSON, persistent, type, ids and `headers()`."""
        headers = self.headers()
        return Basic.Properties(
            content_type=JSON,
            delivery_mode=PERSISTENT,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            message_type=self.type,
            timestamp=self.timestamp,
            headers=headers,  # type: ignore[arg-type]
            app_id=self.app_id,
        )


def follow_on_id(parent_id: str, worker: str, index: int, event: Event) -> str:
    """The id of a handler's `index`-th follow-on event.

    Derived from the message that caused it, so a redelivered cause emits the
    same ids again and the consumers downstream dedupe them.
    """
    seed = f"{parent_id}\x00{worker}\x00{index}\x00{event.__wire_name__}".encode()
    return hashlib.blake2b(seed, digest_size=16).hexdigest()


def outgoing_event(
    event: Event,
    *,
    exchange: str,
    message_id: str,
    correlation_id: str,
    causation_id: str | None = None,
    mandatory: bool = True,
    app_id: str | None = None,
    trace: dict[str, str] | None = None,
) -> Outgoing:
    """An event as the message that will carry it."""
    return Outgoing(
        exchange=exchange,
        routing_key=event.__routing_key__,
        body=encode(event),
        message_id=message_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        type=event.__wire_name__,
        version=event.__version__,
        mandatory=mandatory,
        timestamp=datetime.now(UTC),
        app_id=app_id,
        trace=trace,
    )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Outgoing])


def pack(messages: Sequence[Outgoing]) -> bytes:
    """Outgoing messages as bytes, for the inbox row."""
    return _encoder.encode(messages)


def unpack(data: bytes) -> list[Outgoing]:
    """The messages `pack` stored."""
    return _decoder.decode(data)
