"""One delivery's path, top to bottom:

    (`order_by`: wait, no slot, for the delivery of its key before it: `ordering`)
    ─▶ read it once (`delivery`) ─▶ its turn, if the stage paces (rate limits: a wait, no slot)
    ─▶ a slot (alone if it may have crashed the last process)
    ─▶ refuse what no stage can use (undecodable properties, a crash loop, a bad version)
    ─▶ the stage: a worker's handlers (`handling`), or a webhook's POST
    ─▶ settle: ack, or publish its retry or dead-letter copy with a confirm, then ack

Whatever a step raises, the delivery ends acked, retried or parked: an
unexpected error is parked as `internal`. Only a lost channel leaves it to the
broker. Acks go out in batches (`acking`); metrics, tracing, counters, logs and
the timeline observe through `hooks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Protocol

import aiormq
import structlog
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from topology.names import failure_exchange
from workers.errors import PublishFailed
from workers.runtime import headers as h
from workers.runtime.acking import Acknowledger
from workers.runtime.connection import CONNECTION_ERRORS as _CONNECTION_ERRORS
from workers.runtime.deadletter import bare_copy, parked_copy, recounted_copy, redelivery_copy
from workers.runtime.delivery import Delivery, read_delivery
from workers.runtime.hooks import Observers
from workers.runtime.inbox import Inbox
from workers.runtime.ordering import KeyLines
from workers.runtime.publisher import Publisher
from workers.runtime.retry import (
    Decision,
    Park,
    Recount,
    Redeliver,
    crash_guard,
    describe,
    truncate,
)
from workers.runtime.slots import Slots

log = structlog.get_logger("fleet.consumer")

#: How long to wait before handing back a delivery that could not be settled
#: (its dead-letter queue is missing, say), so a broken setup does not spin.
SETTLE_FAILURE_PAUSE = 1.0

#: Errors that mean the channel or connection went away: a delivery meeting one
#: is left to the broker to redeliver, never parked.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *_CONNECTION_ERRORS,
    aiormq.exceptions.ChannelClosed,
)
#: What a failure copy's publish may raise that encoding it again cannot help.
_UNSENDABLE: tuple[type[BaseException], ...] = (PublishFailed, *CONNECTION_ERRORS)

Outcome = tuple[Decision, int] | None
#: What a delivery waiting for its batch holds (reusable: it holds nothing).
_NO_SLOT: AbstractAsyncContextManager[None] = nullcontext()


class Stage(Protocol):
    """What a consumer does with each delivery it lets through (`handling.HandlerStage`,
    `webhooks.dispatcher.WebhookStage`)."""

    #: Who settles its failures (the `x-fleet-worker` header).
    name: str

    def label(self, delivery: Delivery) -> str | None:
        """What the delivery is, for counting: a contract's wire name, or None."""

    async def process(self, delivery: Delivery, label: str | None) -> Outcome:
        """None when the delivery is done; else where it goes, and the attempts so far."""

    async def announce(self, delivery: Delivery, decision: Park) -> None:
        """Called before the delivery is parked (fault events)."""


class Consumer:
    """Consumes one queue on one channel, through one stage.

    Args:
        stage: what each delivery is processed by.
        queue: the queue consumed.
        channel: the aiormq channel deliveries arrive on (acks go back on it).
        publisher: a confirm-mode publisher for retries and dead letters.
        observers: told of every step.
        concurrency: deliveries processed at once.
        ack_batch: finished deliveries gathered per multiple ack.
        inbox: counts the starts of crash suspects; None counts none.
        crash_limit: park a message started this many times without finishing.
        count_redeliveries: count redeliveries in a header when there is no inbox to
            count starts (classic queues: RabbitMQ does not count them).
        pace: the seconds a delivery waits for its turn, and its label (rate limits);
            None paces nothing and costs nothing.
        order: per-key lines (`order_by`): a delivery waits for the one of its key
            before it; None orders nothing and costs nothing.
    """

    def __init__(
        self,
        *,
        stage: Stage,
        queue: str,
        channel: AbstractChannel,
        publisher: Publisher,
        observers: Observers,
        concurrency: int,
        ack_batch: int,
        inbox: Inbox | None = None,
        crash_limit: int = 5,
        count_redeliveries: bool = False,
        pace: Callable[[Delivery], tuple[float, str | None]] | None = None,
        order: KeyLines | None = None,
    ):
        self.stage = stage
        self.queue = queue
        self._publisher = publisher
        self._observers = observers
        self._inbox = inbox
        self._crash_limit = crash_limit
        self._count_redeliveries = count_redeliveries
        self._pace = pace
        self._failures = failure_exchange(queue)
        self._slots = Slots(concurrency)
        # A worker with batch handlers: their deliveries wait for their batch without
        # a slot (the batch takes one). Chosen once, so other workers pay nothing.
        self._slot: Callable[[Delivery], AbstractAsyncContextManager[Any]] = self._plain_slot
        gather_in = getattr(stage, "gather_in", None)  # a webhook's stage never batches
        self._gathers: Callable[[Delivery], bool] | None = (
            None if gather_in is None else gather_in(self._slots)
        )
        if self._gathers is not None:
            self._slot = self._batch_slot
        self._acks = Acknowledger(
            channel, queue=queue, batch=ack_batch, scatter_after=max(ack_batch, concurrency)
        )
        self._stopping = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Chosen once: a consumer without `order_by` pays nothing per delivery.
        self._order = order
        self.on_message: Callable[[DeliveredMessage], Coroutine[Any, Any, None]] = (
            self._on_message if order is None else self._on_ordered_message
        )

    async def _on_ordered_message(self, message: DeliveredMessage) -> None:
        """`on_message` with per-key order: join the key's line on arrival, wait for
        the one before (no slot held), run, and hand the line on once settled."""
        assert self._order is not None
        turn = self._order.join(message)
        if turn is None:  # no key: unordered
            await self._on_message(message)
            return
        async with turn:
            await self._on_message(message)

    async def _on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback (`on_message`): runs in its own task per delivery."""
        self._acks.received()
        self._active += 1
        self._idle.clear()
        try:
            delivery = read_delivery(message)
            if self._pace is not None:
                await self._take_turn(delivery, self._pace)
            async with self._slot(delivery):
                if self._stopping:  # left unacked: closing the channel requeues it
                    self._acks.abandoned()
                    self._observers.requeued(delivery)
                    return
                label = self.stage.label(delivery)
                outcome = await self._outcome(delivery, label)
            await self._settle(delivery, label, outcome)
        except asyncio.CancelledError:
            self._acks.abandoned()  # the channel closed under us; the broker redelivers
            raise
        except CONNECTION_ERRORS as error:
            self._acks.abandoned()  # nothing can be settled on a channel that is gone
            log.warning("message.abandoned", queue=self.queue, error=str(error))
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _take_turn(
        self, delivery: Delivery, pace: Callable[[Delivery], tuple[float, str | None]]
    ) -> None:
        """Hold the delivery (unacked, not a retry, no slot taken: other handlers keep
        theirs) until the rate limits give it its turn."""
        try:
            wait, label = pace(delivery)
        except Exception as error:  # no turn is better than a delivery left in flight
            log.error("message.pace_failed", queue=self.queue, error=describe(error))
            return
        if wait > 0.0:
            self._observers.throttled(delivery, label, wait)
            await asyncio.sleep(wait)

    def _plain_slot(self, delivery: Delivery) -> AbstractAsyncContextManager[Any]:
        """A slot among `concurrency`; a delivery that may have crashed the last
        process (redelivered, or carrying a redelivery count) runs alone."""
        suspect = delivery.redelivered or (
            self._count_redeliveries and delivery.deliveries is not None
        )
        return self._slots.exclusive() if suspect else self._slots.shared

    def _batch_slot(self, delivery: Delivery) -> AbstractAsyncContextManager[Any]:
        """No slot for a delivery that joins a batch, else `_plain_slot`'s."""
        assert self._gathers is not None
        return _NO_SLOT if self._gathers(delivery) else self._plain_slot(delivery)

    async def _outcome(self, delivery: Delivery, label: str | None) -> Outcome:
        """Refuse what no stage can use, else the stage's outcome; an unexpected error
        anywhere is parked as `internal` rather than left in flight."""
        self._observers.received(delivery, label)
        outcome: Outcome = None
        try:
            if delivery.undecodable is None and not delivery.redelivered and delivery.version:
                # Nothing `_refused` looks at: skip its coroutine (once per delivery).
                outcome = await self.stage.process(delivery, label)
            else:
                outcome = await self._refused(delivery) or await self.stage.process(delivery, label)
        except CONNECTION_ERRORS:
            raise
        except Exception as error:
            outcome = (
                Park("internal", type(error).__name__, truncate(describe(error))),
                (delivery.attempts),
            )
            log.error(
                "message.internal_error",
                worker=self.stage.name,
                queue=self.queue,
                message_id=delivery.message_id,
                correlation_id=delivery.correlation_id,
                type=delivery.type_name,
                error_type=type(error).__name__,
                error=outcome[0].message,
                exc_info=error,
            )
        finally:
            self._observers.finished(delivery, outcome[0] if outcome else None)
        return outcome

    async def _refused(self, delivery: Delivery) -> Outcome:
        """What is parked before any stage sees it: undecodable properties, a crash loop,
        a version header that is no version."""
        attempts = delivery.attempts
        if delivery.undecodable is not None:
            park = Park("undecodable-properties", "UndecodableProperties", delivery.undecodable)
            return park, attempts
        if delivery.redelivered:
            guard = await self._crash_guard(delivery)
            if guard is not None:
                return guard, attempts
        if delivery.version is None:
            shown = repr(delivery.headers.get(h.VERSION))
            shown = shown if len(shown) <= 60 else shown[:59] + "…"
            reason = f"the version header must be a positive integer, got {shown}"
            return Park("invalid-version", "InvalidVersion", reason), attempts
        return None

    async def _crash_guard(self, delivery: Delivery) -> Decision | None:
        """Count this start of a suspect delivery; park it past the crash limit."""
        started = None
        if self._inbox is not None:
            try:
                started = await self._inbox.started(self.stage.name, delivery.message_id)
            except Exception as error:  # the database is down: the handler's own claim retries
                log.warning(
                    "crash_guard.unavailable", message_id=delivery.message_id, error=str(error)
                )
        if started is not None:
            # This start is counted, but the delivery before the first redelivery was
            # not: it ran (or waited) unsuspected. So `started` runs are unfinished.
            return crash_guard(started, self._crash_limit)
        if self._count_redeliveries:
            unfinished = (delivery.deliveries or 0) + 1
            return crash_guard(unfinished, self._crash_limit, recount=True)
        return None

    # -- settling -------------------------------------------------------------

    async def _settle(self, delivery: Delivery, label: str | None, outcome: Outcome) -> None:
        """Ack a delivery that is done; else publish its copy with a confirm, then ack.

        A copy the broker did not confirm leaves the original to be handed back
        (nack with requeue) after a pause.
        """
        if outcome is None:
            self._observers.processed(delivery, label)
            await self._acks.finished(delivery.tag)
            return
        decision, attempts = outcome
        name, queue, message_id = self.stage.name, self.queue, delivery.message_id
        message, to = delivery.message, queue
        try:
            match decision:
                case Redeliver():
                    to, properties = redelivery_copy(
                        message, decision, message_id=message_id, worker=name, queue=queue,
                        attempts=attempts,
                    )  # fmt: skip
                case Park():
                    await self.stage.announce(delivery, decision)
                    to, properties = parked_copy(
                        message, decision, message_id=message_id, worker=name, queue=queue,
                        attempts=attempts,
                    )  # fmt: skip
                case Recount():
                    to, properties = recounted_copy(
                        message, decision, queue=queue, message_id=message_id
                    )
            await self._send_copy(delivery, to, properties)
        except PublishFailed as error:
            self._observers.unsettled(delivery, to, error)
            await asyncio.sleep(SETTLE_FAILURE_PAUSE)
            await self._acks.requeue(delivery.tag)
            return
        await self._observers.settled(delivery, label, decision, attempts)
        await self._acks.finished(delivery.tag)

    async def _send_copy(self, delivery: Delivery, to: str, properties: Basic.Properties) -> None:
        """Publish a failure copy through the queue's failure exchange (the only one a
        worker's broker user may write besides its own: docs/operations/security.md);
        when its headers cannot be encoded, with fleet's own only."""
        publish, body = self._publisher.publish, delivery.body
        try:
            await publish(body, exchange=self._failures, routing_key=to, properties=properties)
        except _UNSENDABLE:
            raise
        except Exception as error:
            log.error(
                "message.headers_dropped",
                queue=self.queue,
                message_id=delivery.message_id,
                error=truncate(describe(error)),
            )
            bare = bare_copy(properties, dropped=describe(error))
            await publish(body, exchange=self._failures, routing_key=to, properties=bare)

    # -- shutdown -------------------------------------------------------------

    async def drain(self, seconds: float) -> bool:
        """Stop starting new deliveries, wait for running ones, send the last acks.

        Returns:
            True if every started delivery finished within `seconds`.
        """
        self._stopping = True
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
            finished = True
        except TimeoutError:
            finished = False
        await self._acks.flush()
        return finished

    @property
    def in_flight(self) -> int:
        """Deliveries received and not yet settled (those waiting for their key too)."""
        waiting = 0 if self._order is None else self._order.waiting
        return self._acks.in_flight + waiting
