"""A delivery read once, at the door, into one small value.

Everything the message path needs from the frames (tag, ids, fleet's
headers, the `version`) is read here, and only here. Any AMQP client may
publish, so nothing is trusted: a fleet header of the wrong type counts as
absent, a `version` that is not a positive integer is recorded as invalid
(the consumer parks the message for it), and reading never raises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from aiormq.abc import DeliveredMessage

from contracts import derive_message_id
from workers.runtime import headers as h


# Not frozen: a frozen dataclass builds its 16 fields through object.__setattr__,
# twice the time, once per delivery. Nothing assigns to one after `read_delivery`.
@dataclass(slots=True, eq=False)
class Delivery:
    """One delivery, as the consumer sees it (compared and hashed by identity)."""

    message: DeliveredMessage
    tag: int
    redelivered: bool
    exchange: str
    routing_key: str
    headers: dict[str, Any]
    #: The `type` property: the contract's wire name (None: route by routing key).
    type_name: str | None
    #: The `version` header (1 when absent); None when it is not a positive integer.
    version: int | None
    #: The publisher's id (a digest of it if it holds NUL), or one derived from type and
    #: body: stable across redeliveries.
    message_id: str
    correlation_id: str
    causation_id: str | None
    #: Handler calls so far, across every retry tier (fleet's header).
    attempts: int
    #: Broker-delayed redeliveries so far (fleet's header).
    retries: int
    #: Crash-suspect redeliveries counted in a header (classic queues); None when absent.
    deliveries: int | None
    #: Why a property could not be decoded (see `decoding`), if one could not.
    undecodable: str | None

    @property
    def body(self) -> bytes:
        return self.message.body


def read_delivery(message: DeliveredMessage) -> Delivery:
    """The delivery's value; never raises, whatever the publisher sent."""
    delivery = message.delivery
    properties = message.header.properties
    raw = properties.headers
    headers: dict[str, Any] = raw if type(raw) is dict else raw if isinstance(raw, dict) else {}
    type_name = _text(properties.message_type)
    routing_key = _text(getattr(delivery, "routing_key", None)) or ""
    message_id = clean_id(properties.message_id) or derive_message_id(
        type_name or routing_key, message.body
    )
    undecodable = headers.get(h.UNDECODABLE)
    attempts = headers.get(h.ATTEMPTS)
    retries = headers.get(h.RETRIES)
    version = headers.get(h.VERSION, 1)
    return Delivery(
        message=message,
        tag=getattr(delivery, "delivery_tag", None) or 0,
        redelivered=bool(getattr(delivery, "redelivered", False)),
        exchange=_text(getattr(delivery, "exchange", None)) or "",
        routing_key=routing_key,
        headers=headers,
        type_name=type_name,
        # The common values (an int version, no counters yet) without a call each.
        version=version if type(version) is int and version >= 1 else version_of(headers),
        message_id=message_id,
        correlation_id=clean_id(properties.correlation_id) or message_id,
        causation_id=clean_id(headers.get(h.CAUSATION_ID)),
        attempts=0 if attempts is None else count(attempts),
        retries=0 if retries is None else count(retries),
        deliveries=count(headers[h.DELIVERIES]) if h.DELIVERIES in headers else None,
        undecodable=undecodable if isinstance(undecodable, str) else None,
    )


def version_of(headers: dict[str, Any]) -> int | None:
    """The `version` header: 1 when absent, None when not a positive integer.

    Clients whose headers are all text (the management UI's publish form,
    some HTTP bridges) send ``"2"``; digits are read as that number. Booleans,
    floats, lists and other text are not versions.
    """
    value = headers.get(h.VERSION, 1)
    if type(value) is int:
        return value if value >= 1 else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        number = int(value)
        return number if number >= 1 else None
    return None


def count(value: Any) -> int:
    """One of fleet's counter headers: a non-negative int, anything else counts as 0."""
    return value if type(value) is int and value >= 0 else 0


def clean_id(value: Any) -> str | None:
    """An id as fleet keeps it: as sent, unless it holds NUL, which PostgreSQL's text
    refuses (one such id in a group-commit batch would fail every member's claim).
    Those become a stable digest, so redeliveries still dedupe under it."""
    text = value if type(value) is str and value else _text(value)
    if text is None or "\x00" not in text:
        return text
    return "nul-" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _text(value: Any) -> str | None:
    """A short string property or header as text; None when absent or empty."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") or None
    return None
