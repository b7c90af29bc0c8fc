"""A payment gateway and a carrier API on one small HTTP server, with failure injection.

Built on the standard library's ThreadingHTTPServer: a thread per connection
lets a deliberately slow or hanging answer hold up nobody else, and a stand-in
needs no dependency the fleet does not already have.

    POST /gateway/charges              Idempotency-Key; {order_id, customer_id, amount_cents,
                                       currency} → 201 captured | 402 declined
    POST /gateway/charges/KEY/refund   refund the charge made with KEY; void KEY if unseen
    GET  /gateway/charges              every charge, for reconciliation
    POST /carrier/shipments            Idempotency-Key; {order_id, customer_id} → 201 booked
    POST /carrier/shipments/KEY/cancel call off the booking made with KEY; void KEY if unseen
    GET  /carrier/shipments            every booking
    POST /webhooks/<name>              a webhook receiver: verifies Standard Webhooks
                                       signatures (see `receiver.py`)
    GET  /webhooks/deliveries          every webhook request received
    GET|PUT /faults                    the random failure rates
    GET  /health

An idempotency key always gets the same answer: a retried charge is never a
second charge. The answer is recorded before any injected delay, as a real
system that is slow to answer has already acted.

Failures are chosen per request by words in the customer id:

    decline   the gateway declines the charge
    flaky     the first 2 requests with each key answer 503 (in-process retries cope)
    unstable  the first 4 requests with each key answer 503 (one broker-delayed retry)
    quota     the first request with each key answers 429 with Retry-After (the worker
              waits in the delay tier that covers it, no in-process retries)
    timeout   the first request with each key hangs (longer than any client waits)
    slow      answers take `Faults.slow_seconds`
    hang      the carrier hangs on every request: the saga stalls until its deadline

and at random by `Faults` rates (503s, slow answers, declines). Amounts over
`AMOUNT_LIMIT` cents are declined.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fulfilment.standins.receiver import WebhookReceiver

#: Charges above this many cents are declined ("amount over limit").
AMOUNT_LIMIT = 100_000
#: Requests per key answered 503 for a customer whose id says "flaky" or "unstable".
FLAKY_FAILURES = 2
UNSTABLE_FAILURES = 4
#: What the gateway tells a customer whose id says "quota" to wait, in seconds (once per key).
QUOTA_RETRY_AFTER = 2


@dataclass
class Faults:
    """Random failure injection, on top of the rules read from customer ids."""

    error_rate: float = 0.0  # share of requests answered 503
    slow_rate: float = 0.0  # share of requests answered after slow_seconds
    decline_rate: float = 0.0  # share of new charges declined
    slow_seconds: float = 0.5
    hang_seconds: float = 30.0  # how long a hanging request waits before answering 504
    webhook_error_rate: float = 0.0  # share of verified webhook requests answered 503


@dataclass
class Charge:
    key: str
    order_id: str
    customer_id: str
    amount_cents: int
    currency: str
    status: str  # captured | declined | refunded | voided
    charge_id: str = ""
    reason: str = ""


@dataclass
class Booking:
    key: str
    order_id: str
    customer_id: str
    status: str  # booked | cancelled | voided
    shipment_id: str = ""
    carrier: str = "parcelco"


@dataclass
class Standins:
    """The stand-ins' state: what was charged and booked, and the failure settings."""

    faults: Faults = field(default_factory=Faults)
    charges: dict[str, Charge] = field(default_factory=dict)
    bookings: dict[str, Booking] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    released: threading.Event = field(default_factory=threading.Event)
    webhooks: WebhookReceiver = field(default_factory=WebhookReceiver)
    url: str = ""

    def count(self, key: str) -> int:
        """Count one more request with this key; returns the count."""
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            return self.requests[key]

    def charge(self, key: str, body: dict[str, Any]) -> Charge:
        """The charge for `key`, deciding it on first sight."""
        with self.lock:
            known = self.charges.get(key)
            if known is not None:
                return known
            customer = str(body.get("customer_id", ""))
            amount = int(body.get("amount_cents", 0))
            charge = Charge(
                key=key,
                order_id=str(body.get("order_id", "")),
                customer_id=customer,
                amount_cents=amount,
                currency=str(body.get("currency", "EUR")),
                status="captured",
                charge_id=f"ch_{uuid.uuid4().hex[:16]}",
            )
            if "decline" in customer or random.random() < self.faults.decline_rate:
                charge.status, charge.reason, charge.charge_id = "declined", "card declined", ""
            elif amount > AMOUNT_LIMIT:
                charge.status, charge.reason, charge.charge_id = "declined", "amount over limit", ""
            self.charges[key] = charge
            return charge

    def refund(self, key: str) -> Charge:
        """Refund the charge made with `key`; an unseen key is voided."""
        with self.lock:
            charge = self.charges.get(key)
            if charge is None:
                charge = Charge(key, "", "", 0, "EUR", "voided", reason="voided before charged")
                self.charges[key] = charge
            elif charge.status == "captured":
                charge.status = "refunded"
            return charge

    def book(self, key: str, body: dict[str, Any]) -> Booking:
        with self.lock:
            known = self.bookings.get(key)
            if known is not None:
                return known
            booking = Booking(
                key=key,
                order_id=str(body.get("order_id", "")),
                customer_id=str(body.get("customer_id", "")),
                status="booked",
                shipment_id=f"sh_{uuid.uuid4().hex[:16]}",
            )
            self.bookings[key] = booking
            return booking

    def cancel(self, key: str) -> Booking:
        with self.lock:
            booking = self.bookings.get(key)
            if booking is None:
                booking = Booking(key, "", "", "voided")
                self.bookings[key] = booking
            elif booking.status == "booked":
                booking.status = "cancelled"
            return booking

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {
                "charges": [asdict(c) for c in self.charges.values()],
                "shipments": [asdict(b) for b in self.bookings.values()],
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the workers' clients reuse connections
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None  # quiet: thousands of requests per demo

    # -- routing --------------------------------------------------------------

    def do_GET(self) -> None:
        state = self.server.standins
        if self.path == "/health":
            self._answer(HTTPStatus.OK, {"ok": True})
        elif self.path == "/gateway/charges":
            self._answer(HTTPStatus.OK, state.snapshot()["charges"])
        elif self.path == "/carrier/shipments":
            self._answer(HTTPStatus.OK, state.snapshot()["shipments"])
        elif self.path == "/faults":
            self._answer(HTTPStatus.OK, asdict(state.faults))
        elif self.path == "/webhooks/deliveries":
            self._answer(HTTPStatus.OK, state.webhooks.snapshot())
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route GET {self.path}"})

    def do_PUT(self) -> None:
        body = self._body()
        if self.path != "/faults" or body is None:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route PUT {self.path}"})
            return
        faults = self.server.standins.faults
        for name, value in body.items():
            if hasattr(faults, name):
                setattr(faults, name, float(value))
        self._answer(HTTPStatus.OK, asdict(faults))

    def do_POST(self) -> None:
        if self.path.startswith("/webhooks/"):
            self._webhook()
            return
        body = self._body()
        if body is None:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "the body must be a JSON object"})
            return
        routes = (
            (r"/gateway/charges", self._charge),
            (r"/gateway/charges/(?P<key>[^/]+)/refund", self._refund),
            (r"/carrier/shipments", self._book),
            (r"/carrier/shipments/(?P<key>[^/]+)/cancel", self._cancel),
        )
        for pattern, action in routes:
            match = re.fullmatch(pattern, self.path)
            if match:
                action(body, **match.groupdict())
                return
        self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route POST {self.path}"})

    # -- the systems ------------------------------------------------------------

    def _charge(self, body: dict[str, Any]) -> None:
        key = self._key()
        if key is None or self._injected_failure(key, body):
            return
        charge = self.server.standins.charge(key, body)
        self._delay(key, body)
        if charge.status == "captured":
            self._answer(HTTPStatus.CREATED, asdict(charge))
        else:
            self._answer(HTTPStatus.PAYMENT_REQUIRED, asdict(charge))

    def _refund(self, body: dict[str, Any], key: str) -> None:
        if self._random_failure():
            return
        self._answer(HTTPStatus.OK, asdict(self.server.standins.refund(key)))

    def _book(self, body: dict[str, Any]) -> None:
        key = self._key()
        if key is None or self._injected_failure(key, body):
            return
        if "hang" in str(body.get("customer_id", "")):
            self._hang()
            return
        booking = self.server.standins.book(key, body)
        self._delay(key, body)
        self._answer(HTTPStatus.CREATED, asdict(booking))

    def _cancel(self, body: dict[str, Any], key: str) -> None:
        if self._random_failure():
            return
        self._answer(HTTPStatus.OK, asdict(self.server.standins.cancel(key)))

    def _webhook(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        receiver = self.server.standins.webhooks
        receiver.error_rate = self.server.standins.faults.webhook_error_rate
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = receiver.handle(self.path, headers, raw)
        data = json.dumps({"status": answer.status}).encode()
        with contextlib.suppress(OSError):
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    # -- failure injection ----------------------------------------------------

    def _injected_failure(self, key: str, body: dict[str, Any]) -> bool:
        """Answer 503 if the rules say so; True when answered."""
        seen = self.server.standins.count(key)
        customer = str(body.get("customer_id", ""))
        failures = (
            UNSTABLE_FAILURES
            if "unstable" in customer
            else FLAKY_FAILURES
            if "flaky" in customer
            else 0
        )
        if seen <= failures:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable (injected)"})
            return True
        if "quota" in customer and seen == 1:
            self._answer(
                HTTPStatus.TOO_MANY_REQUESTS,
                {"error": "quota exceeded (injected)"},
                headers={"Retry-After": str(QUOTA_RETRY_AFTER)},
            )
            return True
        return self._random_failure()

    def _random_failure(self) -> bool:
        if random.random() < self.server.standins.faults.error_rate:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable (injected)"})
            return True
        return False

    def _delay(self, key: str, body: dict[str, Any]) -> None:
        """Slow or hang the answer (the effect is recorded already)."""
        state = self.server.standins
        customer = str(body.get("customer_id", ""))
        if "timeout" in customer and state.requests.get(key, 0) == 1:
            state.released.wait(state.faults.hang_seconds)
        elif "slow" in customer or random.random() < state.faults.slow_rate:
            state.released.wait(state.faults.slow_seconds)

    def _hang(self) -> None:
        state = self.server.standins
        state.released.wait(state.faults.hang_seconds)
        self._answer(HTTPStatus.GATEWAY_TIMEOUT, {"error": "hung (injected)"})

    # -- plumbing ---------------------------------------------------------------

    def _key(self) -> str | None:
        key = self.headers.get("Idempotency-Key")
        if not key:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": "an Idempotency-Key header is required"})
        return key

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _answer(
        self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        with contextlib.suppress(OSError):  # the client may have given up (timed out)
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standins: Standins):
        super().__init__(address, _Handler)
        self.standins = standins

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (timed out, or its process was killed) is routine.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: Faults | None = None,
    webhook_secrets: Sequence[str] = (),
) -> Iterator[Standins]:
    """Serve the stand-ins on a background thread until the block exits.

    `port=0` picks a free port; the state's `url` says which. `webhook_secrets`
    are the `whsec_` secrets the webhook receiver accepts.
    """
    standins = Standins(faults=faults or Faults())
    standins.webhooks.secrets = list(webhook_secrets)
    server = _Server((host, port), standins)
    standins.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="standins", daemon=True
    )
    thread.start()
    try:
        yield standins
    finally:
        standins.released.set()  # let hanging answers go
        standins.webhooks.release()
        server.shutdown()
        server.server_close()
        thread.join(5)
