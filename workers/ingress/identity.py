"""The ids a request's event gets: its message id (the dedupe key) and correlation id.

On a signed route both come only from what the signature covers, so a
captured request sent again, with whatever headers added or changed, is the
same message, caught by the ingress's dedupe and every worker's inbox:

    standard-webhooks   the `webhook-id` (signed with the timestamp and body)
    stripe              the event's `id` in the signed body; an event without
                        one: a digest of the signed payload, ``<t>.<body>``
    github              a digest of the signature and body: GitHub signs
                        neither a timestamp nor its `X-GitHub-Delivery` id

The caller's `Idempotency-Key` and `X-Correlation-Id` are unsigned, so they
count only on routes without a signature (no auth, or a bearer token); a
signed route ignores both, and its correlation id is its message id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from topology.model import IngressAuthType
from workers.signing import as_bytes

#: AMQP short strings (message_id, correlation_id) hold at most 255 bytes.
MAX_ID_BYTES = 255

#: The signed routes, and what their callers call the id that becomes the message id.
_SIGNED_ID: dict[IngressAuthType | None, str] = {
    "standard-webhooks": "webhook-id",
    "stripe": "the Stripe event id",
    "github": "the GitHub delivery's digest",
}
SIGNED = frozenset(_SIGNED_ID)


class InvalidId(ValueError):
    """An id the caller chose (or signed) cannot be an AMQP message id (HTTP 400)."""


@dataclass(frozen=True)
class Ids:
    """A request's message id and correlation id."""

    message_id: str
    correlation_id: str
    #: Whether a repeat of this request carries the same message id, so the
    #: ingress remembers it for the route's dedupe window. False for a fresh UUID.
    repeatable: bool


def request_ids(
    auth: IngressAuthType | None,
    headers: Mapping[str, str],
    body: bytes,
    proof: str | None,
) -> Ids:
    """The ids of one request whose credentials have been checked.

    Args:
        auth: the route's auth type.
        headers: the request's headers.
        body: the body as received (and signed).
        proof: what the signature check returned: the `webhook-id`, the
            verified GitHub signature, or Stripe's signed timestamp.

    Raises:
        InvalidId: an id is not UTF-8, or longer than 255 bytes.
    """
    if auth is not None and auth in _SIGNED_ID:
        assert proof is not None, "a signed route's check returns its proof"
        message_id = _checked(_SIGNED_ID[auth], signed_id(auth, proof, body))
        return Ids(message_id, message_id, repeatable=True)
    given = headers.get("Idempotency-Key")
    message_id = _checked("Idempotency-Key", given) if given else uuid.uuid4().hex
    correlation = headers.get("X-Correlation-Id")
    correlation_id = _checked("X-Correlation-Id", correlation) if correlation else message_id
    return Ids(message_id, correlation_id, repeatable=bool(given))


def signed_id(auth: IngressAuthType, proof: str, body: bytes) -> str:
    """The message id of a signed request, from signed material only."""
    if auth == "standard-webhooks":
        return proof
    if auth == "github":
        return "github-" + hashlib.sha256(as_bytes(proof) + b"\n" + body).hexdigest()
    event_id = stripe_event_id(body)
    if event_id is not None:
        return event_id
    return "stripe-" + hashlib.sha256(as_bytes(f"{proof}.") + body).hexdigest()


class _StripeEvent(msgspec.Struct):
    id: str | None = None


def stripe_event_id(body: bytes) -> str | None:
    """The Stripe event id (``evt_...``), the same on every retry of one event;
    None if the body (already decoded as the route's contract) has no string `id`."""
    try:
        event_id = msgspec.json.decode(body, type=_StripeEvent).id
    except (msgspec.DecodeError, RecursionError):
        return None
    return event_id or None


def _checked(name: str, value: str) -> str:
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise InvalidId(f"{name} is not valid UTF-8") from None
    if size > MAX_ID_BYTES:
        raise InvalidId(f"{name} is longer than {MAX_ID_BYTES} bytes")
    return value
