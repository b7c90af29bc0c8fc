"""One subscription's delivery path, top to bottom:

    delivery ─▶ subscribed type? ─▶ SSRF guard ─▶ POST, signed ─▶ decide (outcome.py)
      delivered ─▶ record ─▶ ack
      retry     ─▶ copy to <queue>.retry.<delay> (confirmed) ─▶ record ─▶ ack
      dead      ─▶ copy to <queue>.dead with the reason (confirmed) ─▶ record ─▶ ack

The webhook-id is the AMQP message_id, the same on every attempt, so a
receiver dedupes a delivery it accepted but whose answer was lost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

import httpx
import structlog
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from contracts import derive_message_id
from workers.errors import PublishFailed
from workers.runtime import headers as h
from workers.runtime.deadletter import parked_copy, redelivery_copy
from workers.runtime.publisher import Publisher
from workers.runtime.retry import Decision, Park, Redeliver
from workers.webhooks.destination import check_destination
from workers.webhooks.errors import DeliveryFailed, DestinationRefused
from workers.webhooks.outcome import decide
from workers.webhooks.records import DeliveryRecord, Outcome, Records
from workers.webhooks.sender import CORRELATION_ID, EVENT_TYPE, EVENT_VERSION, Attempt, post
from workers.webhooks.subscription import Subscription

log = structlog.get_logger("fleet.webhooks")

#: How long to wait before handing back a delivery whose retry or dead-letter copy
#: the broker refused (its queue is missing, say), so a broken setup does not spin.
SETTLE_FAILURE_PAUSE = 1.0


@dataclass
class Counters:
    """What a dispatcher did since it started."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0


class Dispatcher:
    """Delivers one subscription's queue over HTTP, at most `concurrency` at once.

    Args:
        subscription: the resolved subscription.
        channel: the aiormq channel deliveries arrive on (acks go back on it).
        publisher: a confirm-mode publisher for the retry and dead-letter copies.
        client: the HTTP client (redirects off).
        records: where each attempt is recorded.
    """

    def __init__(
        self,
        subscription: Subscription,
        *,
        channel: AbstractChannel,
        publisher: Publisher,
        client: httpx.AsyncClient,
        records: Records,
    ):
        self.subscription = subscription
        self.counters = Counters()
        self._channel = channel
        self._publisher = publisher
        self._client = client
        self._records = records
        self._slots = asyncio.Semaphore(subscription.concurrency)
        self._stopping = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback: runs in its own task per delivery."""
        self._active += 1
        self._idle.clear()
        try:
            async with self._slots:
                if not self._stopping:  # else left unacked: closing the channel requeues it
                    await self._deliver(message)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _deliver(self, message: DeliveredMessage) -> None:
        properties = message.header.properties
        headers: dict[str, Any] = properties.headers or {}
        message_id = properties.message_id or _derived_id(message)
        event_type = properties.message_type or "?"
        number = int(headers.get(h.ATTEMPTS, 0)) + 1
        attempt, decision = await self._attempt(message, message_id, event_type, headers)
        fields = {
            "subscription": self.subscription.name,
            "message_id": message_id,
            "correlation_id": properties.correlation_id,
            "type": event_type,
            "attempt": number,
            "status": attempt.status,
            "latency_ms": attempt.latency_ms,
        }
        if decision is not None and not await self._settle(message, decision, message_id, number):
            log.error("webhook.unsettled", error=attempt.error, **fields)
            return
        self._count(decision, fields)
        await self._record(attempt, decision, message_id, event_type, number)
        tag = cast(int, cast(Basic.Deliver, message.delivery).delivery_tag)
        await self._channel.basic_ack(tag, wait=False)

    async def _attempt(
        self, message: DeliveredMessage, message_id: str, event_type: str, headers: dict[str, Any]
    ) -> tuple[Attempt, Decision | None]:
        """Try one delivery; what came back and where the message goes (None: delivered)."""
        sub = self.subscription
        version = _version(headers)
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
            return refused, sub.rules.decide(error, int(headers.get(h.RETRIES, 0)))
        attempt = await post(
            self._client,
            sub.url,
            message_id=message_id,
            body=message.body,
            secrets=sub.secrets,
            seconds=sub.timeout,
            extra=_event_headers(message, event_type, version),
            connect_to=address,
        )
        return attempt, decide(attempt, sub.rules, int(headers.get(h.RETRIES, 0)))

    async def _settle(
        self, message: DeliveredMessage, decision: Decision, message_id: str, number: int
    ) -> bool:
        """Publish the retry or dead-letter copy with a confirm; False (and the delivery
        handed back to the queue) if the broker refused it."""
        sub = self.subscription
        place = {"message_id": message_id, "worker": sub.queue, "queue": sub.queue}
        if isinstance(decision, Redeliver):
            routing_key, properties = redelivery_copy(message, decision, attempts=number, **place)
        elif isinstance(decision, Park):
            routing_key, properties = parked_copy(message, decision, attempts=number, **place)
        else:
            raise AssertionError(f"the dispatcher never recounts: {decision!r}")
        try:
            await self._publisher.publish(
                message.body, exchange="", routing_key=routing_key, properties=properties
            )
        except PublishFailed:
            await asyncio.sleep(SETTLE_FAILURE_PAUSE)
            tag = cast(int, cast(Basic.Deliver, message.delivery).delivery_tag)
            await self._channel.basic_nack(tag, requeue=True, wait=False)
            return False
        return True

    def _count(self, decision: Decision | None, fields: dict[str, Any]) -> None:
        if decision is None:
            self.counters.delivered += 1
            log.info("webhook.delivered", **fields)
        elif isinstance(decision, Redeliver):
            self.counters.retried += 1
            log.warning(
                "webhook.retried", delay=str(decision.delay), error=decision.reason, **fields
            )
        elif isinstance(decision, Park):
            self.counters.dead_lettered += 1
            log.warning(
                "webhook.dead_lettered", reason=decision.reason, error=decision.message, **fields
            )

    async def _record(
        self,
        attempt: Attempt,
        decision: Decision | None,
        message_id: str,
        event_type: str,
        number: int,
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
            message_id=message_id,
            event_type=event_type,
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
            log.warning("webhook.unrecorded", message_id=message_id, error=str(error))

    async def drain(self, seconds: float) -> bool:
        """Stop starting deliveries and wait for running ones; True if all finished."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _event_headers(message: DeliveredMessage, event_type: str, version: int) -> dict[str, str]:
    headers = {EVENT_TYPE: event_type, EVENT_VERSION: str(version)}
    correlation_id = message.header.properties.correlation_id
    if correlation_id:
        headers[CORRELATION_ID] = correlation_id
    return headers


def _detail(decision: Decision) -> str:
    if isinstance(decision, Redeliver):
        return decision.reason
    if isinstance(decision, Park):
        return f"{decision.reason}: {decision.message}"
    return "recounted"


def _derived_id(message: DeliveredMessage) -> str:
    """The stable id of a message its publisher sent without one."""
    delivery = cast(Basic.Deliver, message.delivery)
    name = message.header.properties.message_type or delivery.routing_key or ""
    return derive_message_id(name, message.body)


def _version(headers: dict[str, Any]) -> int:
    try:
        return int(headers.get(h.VERSION, 1))
    except (TypeError, ValueError):
        return 1
