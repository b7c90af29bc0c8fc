"""Caller authentication for ingress routes: bearer tokens, Standard Webhooks,
GitHub and Stripe webhook signatures, and IP allow-lists (the Standard Webhooks
algorithm itself lives in `workers.standard_webhooks`, shared with the outbound
webhook dispatcher).

Every comparison is constant-time, and each check accepts any of several
secrets, so a secret is rotated by adding the new one before removing the old.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping, Sequence

from topology.model import IngressAuth
from workers import standard_webhooks
from workers.signing import as_bytes, matches_any, timestamp_problem
from workers.standard_webhooks import TOLERANCE_SECONDS


class Unauthorized(Exception):
    """The request's credentials are missing or wrong (HTTP 401)."""


class Forbidden(Exception):
    """The caller's address is not on the route's allow-list (HTTP 403)."""


class MissingSecret(Exception):
    """None of a route's secret environment variables is set."""


def secrets_from_env(auth: IngressAuth, environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets a route accepts: the set, non-empty variables of `secrets_env`.

    Raises:
        MissingSecret: none of them is set.
    """
    env = os.environ if environ is None else environ
    secrets = [env[name] for name in auth.secrets_env if env.get(name)]
    if not secrets:
        raise MissingSecret(
            f"none of the environment variables {', '.join(auth.secrets_env)} is set"
        )
    return secrets


def check_bearer(authorization: str | None, secrets: Sequence[str]) -> None:
    """Accept ``Authorization: Bearer <token>`` when the token is one of `secrets`.

    Raises:
        Unauthorized: the header is missing, malformed, or holds another token.
    """
    if not authorization:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    if not matches_any([as_bytes(token.strip())], (as_bytes(secret) for secret in secrets)):
        raise Unauthorized("invalid bearer token")


def sign_standard_webhooks(secret: str, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature Standard Webhooks defines for one message."""
    try:
        return standard_webhooks.sign(secret, message_id, timestamp, body)
    except standard_webhooks.InvalidSecret as exc:
        raise MissingSecret(str(exc)) from None


def verify_standard_webhooks(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check a Standard Webhooks request; return its `webhook-id`.

    Raises:
        Unauthorized: a header is missing, the timestamp is outside the
            tolerance, or no signature matches any secret.
    """
    try:
        return standard_webhooks.verify(headers, body, secrets, now=now, tolerance=tolerance)
    except standard_webhooks.InvalidSignature as exc:
        raise Unauthorized(str(exc)) from None
    except standard_webhooks.InvalidSecret as exc:
        raise MissingSecret(str(exc)) from None


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_``.

    Raises:
        MissingSecret: the secret is not valid base64.
    """
    try:
        return standard_webhooks.webhook_key(secret)
    except standard_webhooks.InvalidSecret as exc:
        raise MissingSecret(str(exc)) from None


GITHUB_PREFIX = "sha256="


def verify_github(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> str:
    """Check GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

    GitHub signs the body alone: neither a timestamp nor the `X-GitHub-Delivery`
    id, so a captured delivery verifies for as long as the secret is valid. The
    ingress therefore derives the message id from the signature and body (see
    `workers.ingress.identity`) and remembers it for the route's dedupe window.

    Returns:
        The verified signature (``sha256=<hex>``).

    Raises:
        Unauthorized: the signature is missing, malformed, or made with another secret.
    """
    given = headers.get("X-Hub-Signature-256")
    if not given:
        raise Unauthorized("missing X-Hub-Signature-256 header")
    if not given.startswith(GITHUB_PREFIX):
        raise Unauthorized("X-Hub-Signature-256 must start with 'sha256='")
    expected = (
        GITHUB_PREFIX.encode()
        + hmac.new(as_bytes(secret), body, hashlib.sha256).hexdigest().encode()
        for secret in secrets
    )
    if not matches_any([as_bytes(given)], expected):
        raise Unauthorized("invalid X-Hub-Signature-256 signature")
    return given


def verify_stripe(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    """Check Stripe's ``Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>...]``.

    The signature is the hex HMAC-SHA256 of ``<t>.<body>`` keyed with the
    endpoint secret as given (``whsec_...``, not decoded). The timestamp is
    signed too, so the tolerance window bounds how long a captured request can
    be replayed; the event id (deduplicated by the ingress) closes the window.

    Returns:
        The signed timestamp (``t``), part of what the message id is derived
        from when the event has no id of its own.

    Raises:
        Unauthorized: the header is missing or malformed, the timestamp is
            outside the tolerance, or no v1 signature matches any secret.
    """
    header = headers.get("Stripe-Signature")
    if not header:
        raise Unauthorized("missing Stripe-Signature header")
    timestamp: str | None = None
    given: list[bytes] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            given.append(as_bytes(value))
    if timestamp is None or not given:
        raise Unauthorized("Stripe-Signature must hold t=<timestamp> and v1=<signature>")
    problem = timestamp_problem(timestamp, now=now, tolerance=tolerance)
    if problem is not None:
        raise Unauthorized(f"the Stripe-Signature timestamp {problem}")
    if not matches_any(given, (sign_stripe(s, timestamp, body).encode() for s in secrets)):
        raise Unauthorized("no valid v1 signature in Stripe-Signature")
    return timestamp


def sign_stripe(secret: str, timestamp: int | str, body: bytes) -> str:
    """The hex v1 signature Stripe computes for `body` sent at `timestamp`."""
    signed = as_bytes(f"{timestamp}.") + body
    return hmac.new(as_bytes(secret), signed, hashlib.sha256).hexdigest()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """Allow-list entries (addresses or CIDR blocks) as networks.

    Raises:
        ValueError: naming the entry that is neither.
    """
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
    return tuple(networks)


def check_ip(remote: str | None, networks: Sequence[Network]) -> None:
    """Accept a caller whose address lies in one of `networks`.

    Raises:
        Forbidden: the address is unknown or outside every network.
    """
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        raise Forbidden("the caller's address is unknown") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in networks):
        raise Forbidden(f"{address} is not allowed to post here")
