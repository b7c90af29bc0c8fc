"""A webhook subscription's stage on fleet's one consumer (`runtime.consumer`):

    subscribed type? ─▶ SSRF guard ─▶ POST, signed ─▶ decide (outcome.py) ─▶ record
      delivered ─▶ ack                    (the consumer: in batches, like a worker)
      retry     ─▶ copy to <queue>.retry.<delay> (confirmed) ─▶ ack
      dead      ─▶ copy to <queue>.dead with the reason (confirmed) ─▶ ack

The webhook-id is the AMQP message_id, the same on every attempt, so a
receiver dedupes a delivery it accepted but whose answer was lost. Each
attempt is recorded when it is decided; should its copy then be refused (the
delivery goes back to the queue), the next attempt is recorded too.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from workers.runtime.delivery import Delivery
from workers.runtime.hooks import DeliveryObserver
from workers.runtime.retry import Decision, Park, Redeliver
from workers.webhooks.destination import check_destination
from workers.webhooks.errors import DeliveryFailed, DestinationRefused
from workers.webhooks.outcome import decide
from workers.webhooks.records import DeliveryRecord, Outcome, Records
from workers.webhooks.sender import CORRELATION_ID, EVENT_TYPE, EVENT_VERSION, Attempt, post
from workers.webhooks.subscription import Subscription

log = structlog.get_logger("fleet.webhooks")

#: The attempt of the delivery the current task processes (each runs in a task of
#: its own), for the log line written once it is settled.
_attempt: ContextVar[Attempt | None] = ContextVar("fleet_webhook_attempt", default=None)


class WebhookStage:
    """POSTs each delivery of one subscription's queue, signed, and decides its fate.

    Args:
        subscription: the resolved subscription.
        client: the HTTP client (redirects off).
        records: where each attempt is recorded.
    """

    def __init__(self, subscription: Subscription, *, client: httpx.AsyncClient, records: Records):
        self.subscription = subscription
        #: Failure copies name the subscription's queue as the one who parked them.
        self.name = subscription.queue
        self._client = client
        self._records = records

    def label(self, delivery: Delivery) -> str | None:
        return delivery.type_name

    async def process(self, delivery: Delivery, label: str | None) -> tuple[Decision, int] | None:
        """Try one delivery, record the attempt; None when it was delivered."""
        attempt, decision = await self._try(delivery)
        _attempt.set(attempt)
        number = delivery.attempts + 1
        await self._record(delivery, attempt, decision, number)
        return None if decision is None else (decision, number)

    async def announce(self, delivery: Delivery, decision: Park) -> None:
        return None  # a webhook's dead letter is the receiver's business: no fault event

    async def _try(self, delivery: Delivery) -> tuple[Attempt, Decision | None]:
        """POST it (if it is one the subscription takes); what came back, and where it goes."""
        sub = self.subscription
        event_type, version = delivery.type_name or "?", delivery.version or 1
        if (event_type, version) not in sub.events:
            reason = (
                f"subscription {sub.name!r} does not take {event_type} v{version} "
                f"(takes: {', '.join(sorted(f'{n} v{v}' for n, v in sub.events))})"
            )
            return Attempt(None, reason, 0.0), Park("unknown-type", "UnknownEventType", reason)
        try:
            address = await check_destination(
                sub.url, allow_private=sub.allow_private, allow_hosts=sub.allow_hosts
            )
        except (DestinationRefused, DeliveryFailed) as error:
            refused = Attempt(None, str(error), 0.0)
            return refused, sub.rules.decide(error, delivery.retries)
        attempt = await post(
            self._client,
            sub.url,
            message_id=delivery.message_id,
            body=delivery.body,
            secrets=sub.secrets,
            seconds=sub.timeout,
            extra=_event_headers(delivery, event_type, version),
            connect_to=address,
        )
        return attempt, decide(attempt, sub.rules, delivery.retries)

    async def _record(
        self, delivery: Delivery, attempt: Attempt, decision: Decision | None, number: int
    ) -> None:
        """Record the attempt; a failure to record never fails the delivery."""
        outcome: Outcome = (
            "delivered"
            if decision is None
            else "retry"
            if isinstance(decision, Redeliver)
            else "dead"
        )
        record = DeliveryRecord(
            subscription=self.subscription.name,
            message_id=delivery.message_id,
            event_type=delivery.type_name or "?",
            attempt=number,
            url=self.subscription.url,
            status=attempt.status,
            error=None if decision is None else _detail(decision),
            latency_ms=attempt.latency_ms,
            outcome=outcome,
            retry_queue=decision.queue if isinstance(decision, Redeliver) else None,
        )
        try:
            await self._records.add(record)
        except Exception as error:  # a record is a log, not part of the message path
            log.warning("webhook.unrecorded", message_id=delivery.message_id, error=str(error))


@dataclass
class Counters:
    """What a subscription's dispatcher did since it started."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0


class WebhookLog(DeliveryObserver):
    """A subscription's counters and its `webhook.delivered|retried|dead_lettered|unsettled`
    lines, with the attempt's HTTP status and latency."""

    def __init__(self, subscription: str):
        self.subscription = subscription
        self.counters = Counters()

    def on_processed(self, delivery: Delivery, label: str | None) -> None:
        self.counters.delivered += 1
        log.info("webhook.delivered", **self._fields(delivery))

    def on_retried(
        self, delivery: Delivery, label: str | None, decision: Redeliver, attempts: int
    ) -> None:
        self.counters.retried += 1
        log.warning(
            "webhook.retried",
            delay=str(decision.delay),
            error=decision.reason,
            **self._fields(delivery),
        )

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        self.counters.dead_lettered += 1
        log.warning(
            "webhook.dead_lettered",
            reason=decision.reason,
            error=decision.message,
            **self._fields(delivery),
        )

    def on_unsettled(self, delivery: Delivery, to: str, error: Exception) -> None:
        log.error("webhook.unsettled", to=to, error=str(error), **self._fields(delivery))

    def _fields(self, delivery: Delivery) -> dict[str, Any]:
        attempt = _attempt.get()
        return {
            "subscription": self.subscription,
            "message_id": delivery.message_id,
            "correlation_id": delivery.correlation_id,
            "type": delivery.type_name or "?",
            "attempt": delivery.attempts + 1,
            "status": attempt.status if attempt is not None else None,
            "latency_ms": attempt.latency_ms if attempt is not None else 0.0,
        }


def _event_headers(delivery: Delivery, event_type: str, version: int) -> dict[str, str]:
    headers = {EVENT_TYPE: event_type, EVENT_VERSION: str(version)}
    correlation_id = delivery.message.header.properties.correlation_id
    if isinstance(correlation_id, str) and correlation_id:
        headers[CORRELATION_ID] = correlation_id
    return headers


def _detail(decision: Decision) -> str:
    if isinstance(decision, Redeliver):
        return decision.reason
    if isinstance(decision, Park):
        return f"{decision.reason}: {decision.message}"
    return "recounted"
