"""Standard Webhooks signatures (https://www.standardwebhooks.com), both ways:
the HTTP ingress verifies them, the webhook dispatcher makes them, and the
stand-in receiver verifies what the dispatcher sent.

    webhook-id: <message id>    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> [v1,<…> …]

The HMAC key is the base64 after a secret's ``whsec_`` prefix. Several
signatures, space-separated, let a sender sign with every current secret while
receivers rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Mapping, Sequence

from workers.signing import as_bytes, matches_any, timestamp_problem

#: How far a timestamp may be from now, either way (seconds), before it is refused.
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


class InvalidSecret(ValueError):
    """A secret is not valid base64 after its ``whsec_`` prefix."""


class InvalidSignature(Exception):
    """The request's Standard Webhooks headers are missing, stale or signed with another secret."""


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``.

    Raises:
        InvalidSecret: the secret is not valid base64.
    """
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:  # binascii.Error, or characters that are not ASCII
        raise InvalidSecret("a Standard Webhooks secret is not valid base64") from None


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message with one secret."""
    signed = as_bytes(f"{message_id}.{timestamp}.") + body
    digest = hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets: Sequence[str], message_id: str, timestamp: int | str, body: bytes
) -> str:
    """The `webhook-signature` value: one signature per secret, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a request's Standard Webhooks headers; return its `webhook-id`.

    Any signature made with any of `secrets` is accepted; every comparison is
    constant-time.

    Raises:
        InvalidSignature: a header is missing, the timestamp is outside the
            tolerance, or no signature matches any secret.
    """
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise InvalidSignature(
            "missing Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature)"
        )
    problem = timestamp_problem(timestamp, now=now, tolerance=tolerance)
    if problem is not None:
        raise InvalidSignature(f"webhook-timestamp {problem}")
    given = [as_bytes(s.partition(",")[2]) for s in signatures.split() if s.startswith("v1,")]
    expected = (
        sign(secret, message_id, timestamp, body).partition(",")[2].encode() for secret in secrets
    )
    if not matches_any(given, expected):
        raise InvalidSignature("no valid webhook-signature")
    return message_id
