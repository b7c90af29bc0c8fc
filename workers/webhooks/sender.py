"""One delivery attempt: POST the event's body, signed, and time the answer."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from workers.standard_webhooks import signature_header

USER_AGENT = "fleet-webhooks/1"
#: Informational headers (not covered by the signature): the event's type, version
#: and saga, so a receiver can route without parsing the body.
EVENT_TYPE = "fleet-event-type"
EVENT_VERSION = "fleet-event-version"
CORRELATION_ID = "fleet-correlation-id"
#: How much of an error text an attempt keeps.
ERROR_LIMIT = 300


@dataclass(frozen=True)
class Attempt:
    """What one POST got: an HTTP status, or the error that stopped it."""

    status: int | None
    error: str | None
    latency_ms: float
    retry_after: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    message_id: str,
    body: bytes,
    secrets: tuple[str, ...],
    seconds: float,
    extra: Mapping[str, str] | None = None,
    connect_to: str | None = None,
) -> Attempt:
    """POST `body` unchanged with the Standard Webhooks headers (and `extra`); never
    raises for a failed request (the Attempt says what happened).

    `connect_to` pins the connection to an address the SSRF guard checked: the
    request keeps the URL's host in its Host header and, over TLS, in SNI and
    certificate verification.
    """
    timestamp = int(time.time())
    headers = {
        **(extra or {}),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, message_id, timestamp, body),
    }
    target = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if connect_to is not None:
        headers["host"] = target.netloc.decode("ascii")
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
        target = target.copy_with(host=connect_to)
    started = time.perf_counter()
    try:
        response = await client.post(
            target, content=body, headers=headers, timeout=seconds, extensions=extensions
        )
    except httpx.TimeoutException:
        return Attempt(None, f"timeout after {seconds:g}s", _since(started))
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Attempt(None, error[:ERROR_LIMIT], _since(started))
    return Attempt(
        response.status_code,
        None if response.is_success else response.reason_phrase or None,
        _since(started),
        response.headers.get("retry-after"),
    )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
