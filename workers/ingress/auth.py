"""Caller authentication for ingress routes: bearer tokens, Standard Webhooks and
GitHub webhook signatures (the Standard Webhooks algorithm itself lives in
`workers.standard_webhooks`, shared with the outbound webhook dispatcher).

Every comparison is constant-time, and each check accepts any of several
secrets, so a secret is rotated by adding the new one before removing the old.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from topology.model import IngressAuth
from workers import standard_webhooks
from workers.standard_webhooks import TOLERANCE_SECONDS


class Unauthorized(Exception):
    """The request's credentials are missing or wrong (HTTP 401)."""


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
    given = token.strip().encode()
    # Compare against every secret (no early exit), so timing says nothing.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given, secret.encode())
    if not matched:
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


def verify_github(headers: Mapping[str, str], body: bytes, secrets: Sequence[str]) -> str | None:
    """Check GitHub's ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

    Returns:
        The delivery id (``X-GitHub-Delivery``), which becomes the message id, so
        GitHub's redelivery of the same event is the same message.

    Raises:
        Unauthorized: the signature is missing, malformed, or made with another secret.
    """
    given = headers.get("X-Hub-Signature-256")
    if not given:
        raise Unauthorized("missing X-Hub-Signature-256 header")
    if not given.startswith(GITHUB_PREFIX):
        raise Unauthorized("X-Hub-Signature-256 must start with 'sha256='")
    matched = False
    for secret in secrets:
        expected = GITHUB_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        matched |= hmac.compare_digest(given.encode(), expected.encode())
    if not matched:
        raise Unauthorized("invalid X-Hub-Signature-256 signature")
    return headers.get("X-GitHub-Delivery") or None
