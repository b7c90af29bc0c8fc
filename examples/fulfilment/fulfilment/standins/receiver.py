"""A webhook receiver stand-in: verifies Standard Webhooks signatures, dedupes by
webhook-id, and records every request, with failure injection.

    POST /webhooks/<anything>    verify → 401 if unsigned or signed with another secret;
                                 else the next scripted answer, an injected 503, or
                                 200 (a webhook-id seen before: 200, counted as duplicate)
    GET  /webhooks/deliveries    every request received, in order

Failures: `script(...)` queues answers (tests), `Faults.webhook_error_rate`
answers 503 at random, and a body containing ``webhook-flaky`` gets 503 on its
first 2 requests per webhook-id.
"""

from __future__ import annotations

import json
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.standard_webhooks import InvalidSignature, verify

#: Requests per webhook-id answered 503 when the body says "webhook-flaky".
FLAKY_FAILURES = 2


@dataclass(frozen=True)
class Answer:
    """A scripted answer: a status and extra headers (e.g. Retry-After)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    host: str | None
    webhook_id: str | None
    event_type: str | None
    timestamp: str | None
    signature: str | None
    verified: bool
    status: int
    body: Any
    duplicate: bool = False
    raw: bytes = field(default=b"", repr=False)  # as received, for re-verifying


@dataclass
class WebhookReceiver:
    """The receiver's state; thread-safe (the stand-in serves a thread per connection)."""

    secrets: list[str] = field(default_factory=list)
    error_rate: float = 0.0
    received: list[Received] = field(default_factory=list)
    accepted: dict[str, Received] = field(default_factory=dict)
    #: Requests being answered right now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    _gate: threading.Event = field(default_factory=threading.Event)
    _script: deque[Answer] = field(default_factory=deque)
    _seen: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, answers: Iterable[int | Answer]) -> None:
        """Answer the next requests (that verify) with these, in order."""
        with self._lock:
            self._script.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def __post_init__(self) -> None:
        self._gate.set()

    def hold(self) -> None:
        """Keep every request waiting (up to 30 s) until `release()`."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Verify, decide the answer, record the request."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._gate.wait(30)
            return self._handle(path, headers, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        with self._lock:
            try:
                verify(headers, body, self.secrets)
                verified = True
            except InvalidSignature:
                verified = False
            webhook_id = headers.get("webhook-id")
            answer = self._answer(verified, webhook_id, body)
            duplicate = answer.status == 200 and webhook_id in self.accepted
            entry = Received(
                path=path,
                host=headers.get("host"),
                webhook_id=webhook_id,
                event_type=headers.get("fleet-event-type"),
                timestamp=headers.get("webhook-timestamp"),
                signature=headers.get("webhook-signature"),
                verified=verified,
                status=answer.status,
                body=_json(body),
                duplicate=duplicate,
                raw=body,
            )
            self.received.append(entry)
            if answer.status == 200 and webhook_id and not duplicate:
                self.accepted[webhook_id] = entry
            return answer

    def _answer(self, verified: bool, webhook_id: str | None, body: bytes) -> Answer:
        if not verified or not webhook_id:
            return Answer(401)
        seen = self._seen[webhook_id] = self._seen.get(webhook_id, 0) + 1
        if self._script:
            return self._script.popleft()
        if b"webhook-flaky" in body and seen <= FLAKY_FAILURES:
            return Answer(503)
        if random.random() < self.error_rate:
            return Answer(503)
        return Answer(200)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{k: v for k, v in asdict(r).items() if k != "raw"} for r in self.received]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
