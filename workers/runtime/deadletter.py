"""The copies fleet publishes of a failed delivery: to a delay queue, or parked
in the dead-letter queue. Body and properties stay as they were; headers say why.

Each goes to the consumed queue's failure exchange (`topology.names.failure_exchange`)
with the target queue's name as its routing key, which reaches that queue alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from topology.names import dead_letter_queue
from workers.runtime import headers as h
from workers.runtime.retry import Park, Recount, Redeliver


def redelivery_copy(
    message: DeliveredMessage,
    decision: Redeliver,
    *,
    message_id: str,
    worker: str,
    queue: str,
    attempts: int,
) -> tuple[str, Basic.Properties]:
    """Routing key (the delay queue) and properties of a retry."""
    headers = _failure_headers(message, worker=worker, queue=queue, attempts=attempts)
    headers[h.RETRIES] = decision.tier if decision.retries is None else decision.retries
    headers[h.ERROR_MESSAGE] = decision.reason
    return decision.queue, _with_headers(message.header.properties, headers, message_id)


def parked_copy(
    message: DeliveredMessage,
    decision: Park,
    *,
    message_id: str,
    worker: str,
    queue: str,
    attempts: int,
) -> tuple[str, Basic.Properties]:
    """Routing key (`<queue>.dead`) and properties of a parked message."""
    headers = _failure_headers(message, worker=worker, queue=queue, attempts=attempts)
    headers[h.REASON] = decision.reason
    headers[h.ERROR_TYPE] = decision.error_type
    headers[h.ERROR_MESSAGE] = decision.message
    return dead_letter_queue(queue), _with_headers(message.header.properties, headers, message_id)


def _failure_headers(
    message: DeliveredMessage, *, worker: str, queue: str, attempts: int
) -> dict[str, Any]:
    headers = dict(message.header.properties.headers or {})
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    delivery = cast(Basic.Deliver, message.delivery)
    headers.setdefault(h.ORIGINAL_EXCHANGE, delivery.exchange)
    headers.setdefault(h.ORIGINAL_ROUTING_KEY, delivery.routing_key)
    headers.setdefault(h.FIRST_FAILURE, now)
    headers[h.LAST_FAILURE] = now
    headers[h.ATTEMPTS] = attempts
    headers[h.WORKER] = worker
    headers[h.QUEUE] = queue
    return headers


def _with_headers(
    original: Basic.Properties, headers: dict[str, Any], message_id: str
) -> Basic.Properties:
    # Properties are kept as they were, except that a message its publisher sent
    # without an id gets the stable id fleet derived, so `dlq replay --id` can name it.
    return copy_properties(original, headers, message_id=original.message_id or message_id)


def copy_properties(
    original: Basic.Properties,
    headers: dict[str, Any],
    *,
    message_id: str | None,
    expiration: bool = True,
) -> Basic.Properties:
    """`original` with new headers and message id; `expiration` False drops a per-message TTL."""
    return Basic.Properties(
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        headers=headers,
        delivery_mode=original.delivery_mode or 2,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        expiration=original.expiration if expiration else None,
        message_id=message_id,
        timestamp=original.timestamp,
        message_type=original.message_type,
        user_id=original.user_id,
        app_id=original.app_id,
    )


def recounted_copy(
    message: DeliveredMessage, decision: Recount, *, queue: str, message_id: str
) -> tuple[str, Basic.Properties]:
    """Routing key (the queue itself) and properties of a redelivered message put back."""
    headers = dict(message.header.properties.headers or {})
    headers[h.DELIVERIES] = decision.deliveries
    delivery = cast(Basic.Deliver, message.delivery)
    headers.setdefault(h.ORIGINAL_EXCHANGE, delivery.exchange)
    headers.setdefault(h.ORIGINAL_ROUTING_KEY, delivery.routing_key)
    return queue, _with_headers(message.header.properties, headers, message_id)


def bare_copy(properties: Basic.Properties, *, dropped: str) -> Basic.Properties:
    """`properties` keeping only fleet's own headers, for a copy whose other headers
    could not be encoded; `x-fleet-dropped-headers` says why they are gone."""
    kept = {k: v for k, v in (properties.headers or {}).items() if k in _FLEET_HEADERS}
    kept[h.DROPPED_HEADERS] = dropped[:200]
    return copy_properties(properties, kept, message_id=properties.message_id)


_FLEET_HEADERS = frozenset(
    (*h.FAILURE_HEADERS, h.ORIGINAL_EXCHANGE, h.ORIGINAL_ROUTING_KEY, h.UNDECODABLE)
)
