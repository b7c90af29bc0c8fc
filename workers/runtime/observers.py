"""The observers every worker has: its counters, the log lines of its failures, and
(with a database) the saga timeline's rows for retries and dead letters.
Metrics and tracing observe through the same hooks (`workers.observability`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from topology.names import dead_letter_queue
from workers.runtime.delivery import Delivery
from workers.runtime.hooks import DeliveryObserver
from workers.runtime.inbox import EventNote, Inbox
from workers.runtime.retry import Park, Recount, Redeliver

log = structlog.get_logger("fleet.consumer")


@dataclass
class Counters:
    """What a worker did since it started."""

    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    parked: int = 0
    requeued: int = 0
    recounted: int = 0
    throttled: int = 0  # deliveries a rate limit held before their handler ran
    by_reason: dict[str, int] = field(default_factory=dict)


class Counting(DeliveryObserver):
    """Keeps `counters` (the worker's `worker.stopped` line reports them)."""

    def __init__(self, counters: Counters):
        self.counters = counters

    def on_throttled(self, delivery: Delivery, label: str | None, seconds: float) -> None:
        self.counters.throttled += 1

    def on_duplicate(self, delivery: Delivery, label: str | None) -> None:
        self.counters.duplicates += 1

    def on_processed(self, delivery: Delivery, label: str | None) -> None:
        self.counters.processed += 1

    def on_retried(
        self, delivery: Delivery, label: str | None, decision: Redeliver, attempts: int
    ) -> None:
        self.counters.retried += 1

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        self.counters.parked += 1
        by_reason = self.counters.by_reason
        by_reason[decision.reason] = by_reason.get(decision.reason, 0) + 1

    def on_recounted(self, delivery: Delivery, decision: Recount) -> None:
        self.counters.recounted += 1

    def on_requeued(self, delivery: Delivery) -> None:
        self.counters.requeued += 1


class FailureLog(DeliveryObserver):
    """One line per failure: `message.retried`, `message.dead_lettered`,
    `message.recounted`, `message.unsettled`, bound to the delivery's ids."""

    def __init__(self, worker: str, queue: str):
        self.worker = worker
        self.queue = queue

    def on_retried(
        self, delivery: Delivery, label: str | None, decision: Redeliver, attempts: int
    ) -> None:
        log.warning(
            "message.retried",
            to=decision.queue,
            delay=str(decision.delay),
            error=decision.reason,
            **self._fields(delivery, attempts),
        )

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        log.warning(
            "message.dead_lettered",
            to=dead_letter_queue(self.queue),
            reason=decision.reason,
            error=decision.message,
            **self._fields(delivery, attempts),
        )

    def on_recounted(self, delivery: Delivery, decision: Recount) -> None:
        log.info(
            "message.recounted",
            deliveries=decision.deliveries,
            **self._fields(delivery, delivery.attempts),
        )

    def on_unsettled(self, delivery: Delivery, to: str, error: Exception) -> None:
        log.error("message.unsettled", to=to, error=str(error), **self._fields(delivery))

    def _fields(self, delivery: Delivery, attempts: int | None = None) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "queue": self.queue,
            "message_id": delivery.message_id,
            "correlation_id": delivery.correlation_id,
            "type": delivery.type_name,
            "attempt": delivery.attempts if attempts is None else attempts,
        }


class Timeline(DeliveryObserver):
    """Adds each retry and dead letter to the saga's timeline (the inbox writes the
    `processed` rows itself, in the handler's transaction). Never fails a delivery."""

    def __init__(self, worker: str, inbox: Inbox):
        self.worker = worker
        self.inbox = inbox

    async def on_failure_settled(self, delivery: Delivery, decision: Redeliver | Park) -> None:
        redelivered = isinstance(decision, Redeliver)
        note = EventNote(
            delivery.correlation_id,
            delivery.message_id,
            delivery.causation_id,
            delivery.type_name or "?",
            self.worker,
            "retried" if redelivered else "dead-lettered",
            [],
            decision.reason if isinstance(decision, Redeliver) else decision.message,
        )
        try:
            await self.inbox.note(note)
        except Exception as error:  # the timeline is a record, not part of the message path
            log.warning("timeline.unwritten", message_id=delivery.message_id, error=str(error))
