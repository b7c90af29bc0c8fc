"""HTTP clients of the external systems: the payment gateway and the carrier API.

URLs and the timeout come from the environment, read when a worker starts:

    FLEET_GATEWAY_URL   default http://127.0.0.1:8765/gateway
    FLEET_CARRIER_URL   default http://127.0.0.1:8765/carrier
    FLEET_HTTP_TIMEOUT  seconds per request, default 2

(`fleet standins run` serves both on port 8765.) Every call that changes
something carries an `Idempotency-Key`, so a retried call is applied once.

A transient failure (a timeout, a refused connection, a 5xx or 429 answer)
raises: the runtime retries in process, then through the queue's delay tiers.
A 429 or 503 that says when to come back (Retry-After) raises `Retry(after=)`
instead: no in-process retries (they would only earn more 429s), straight to
the delay tier that covers the wait.
A decline is an answer, not an error. Any other 4xx means the request itself
is wrong and will never succeed: it raises `Reject`, which parks the message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from workers import Reject, Retry
from workers.http import retry_after

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8765/gateway"
DEFAULT_CARRIER_URL = "http://127.0.0.1:8765/carrier"
DEFAULT_TIMEOUT = 2.0


class Unavailable(Exception):
    """The external system answered with a transient failure (5xx, 429): retry later."""


@dataclass(frozen=True)
class Captured:
    charge_id: str


@dataclass(frozen=True)
class Declined:
    reason: str


@dataclass(frozen=True)
class Refund:
    status: str  # refunded | voided | declined (there was nothing to give back)
    amount_cents: int


@dataclass(frozen=True)
class Booking:
    shipment_id: str
    carrier: str


def timeout_from_env() -> float:
    return float(os.environ.get("FLEET_HTTP_TIMEOUT", DEFAULT_TIMEOUT))


class _Client:
    """An httpx.AsyncClient with fleet's rules for answers."""

    system = "external system"

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(
        self, path: str, body: dict[str, Any], key: str, *, accept: tuple[int, ...] = ()
    ) -> httpx.Response:
        response = await self._http.post(
            f"{self.base_url}{path}", json=body, headers={"Idempotency-Key": key}
        )
        if response.is_success or response.status_code in accept:
            return response
        if response.status_code >= 500 or response.status_code == 429:
            answered = f"{self.system} answered {response.status_code} {response.reason_phrase}"
            told = retry_after(response.headers.get("Retry-After"))
            if told is not None and response.status_code in (429, 503):
                raise Retry(answered, after=told)
            raise Unavailable(answered)
        raise Reject(
            f"{self.system} refused the request ({response.status_code}): {response.text[:200]}"
        )


class GatewayClient(_Client):
    """The payment gateway: charges keyed by idempotency key, refunds of those charges."""

    system = "payment gateway"

    @classmethod
    def from_env(cls) -> GatewayClient:
        return cls(os.environ.get("FLEET_GATEWAY_URL", DEFAULT_GATEWAY_URL), timeout_from_env())

    async def charge(
        self, *, key: str, order_id: str, customer_id: str, amount_cents: int, currency: str
    ) -> Captured | Declined:
        """Capture `amount_cents`; the same key always gets the same answer."""
        response = await self._post(
            "/charges",
            {
                "order_id": order_id,
                "customer_id": customer_id,
                "amount_cents": amount_cents,
                "currency": currency,
            },
            key,
            accept=(402,),
        )
        answer = response.json()
        if response.status_code == 402:
            return Declined(str(answer.get("reason", "declined")))
        return Captured(str(answer["charge_id"]))

    async def refund(self, *, key: str) -> Refund:
        """Give back the charge made with idempotency `key`; if the gateway never
        saw that key, it voids it so a late charge with it is refused."""
        response = await self._post(f"/charges/{key}/refund", {}, f"refund-{key}")
        answer = response.json()
        return Refund(str(answer["status"]), int(answer.get("amount_cents", 0)))


class CarrierClient(_Client):
    """The carrier API: bookings keyed by idempotency key, and their cancellation."""

    system = "carrier"

    @classmethod
    def from_env(cls) -> CarrierClient:
        return cls(os.environ.get("FLEET_CARRIER_URL", DEFAULT_CARRIER_URL), timeout_from_env())

    async def book(self, *, key: str, order_id: str, customer_id: str) -> Booking:
        """Book a shipment; the same key always gets the same booking."""
        response = await self._post(
            "/shipments", {"order_id": order_id, "customer_id": customer_id}, key
        )
        answer = response.json()
        return Booking(str(answer["shipment_id"]), str(answer["carrier"]))

    async def cancel(self, *, key: str) -> str:
        """Call off the booking made with `key` (or void the key); the resulting status."""
        response = await self._post(f"/shipments/{key}/cancel", {}, f"cancel-{key}")
        return str(response.json()["status"])
