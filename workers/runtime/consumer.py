"""One delivery's path, top to bottom:

    read properties ─▶ find the handler by `type` (or routing key) ─▶ decode into the contract
    ─▶ skip if already processed (inbox) ─▶ call the handler (in-process retries)
    ─▶ publish its follow-on events and wait for their confirms ─▶ ack

A failure at any step is settled in one place (`_settle`): a copy goes to a
delay queue or to the dead-letter queue with a confirm, then the original is
acked. Nothing is acked before its effects and follow-ons are confirmed.

The hot path talks to aiormq's channel directly and acks in batches
(`acks.AckBatcher`); it allocates one Context per message and logs nothing
unless something goes wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import aiormq
import structlog
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from contracts import Event, InvalidPayload, decode, derive_message_id
from workers.context import Context
from workers.errors import PublishFailed
from workers.observability.context import copied
from workers.observability.metrics import TypeStats, WorkerMetrics, record_processed
from workers.runtime import headers as h
from workers.runtime.acks import AckBatcher, Frame
from workers.runtime.deadletter import parked_copy, recounted_copy, redelivery_copy
from workers.runtime.inbox import EventNote, Inbox
from workers.runtime.outgoing import Outgoing, follow_on_id, outgoing_event
from workers.runtime.publisher import Publisher
from workers.runtime.retry import (
    Decision,
    HandlerFailed,
    Park,
    Recount,
    Redeliver,
    RetryRules,
    crash_guard,
)
from workers.runtime.slots import Slots
from workers.worker import Emitted, Handler, HandlerSpec, Worker

if TYPE_CHECKING:
    from workers.observability.tracing import Tracing

log = structlog.get_logger("fleet.consumer")

#: How long finished deliveries may wait for a batch to fill before they are
#: acked anyway. Delivery to the handler is not delayed by it, only the
#: release of the prefetch slots.
ACK_DELAY = 0.002

#: How long to wait before handing back a delivery that could not be settled
#: (its dead-letter queue is missing, say), so a broken setup does not spin.
SETTLE_FAILURE_PAUSE = 1.0


@dataclass
class Counters:
    """What this consumer did since it started."""

    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    parked: int = 0
    requeued: int = 0
    recounted: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Consumer:
    """Consumes one queue for one worker on one channel.

    Args:
        worker: the handlers.
        queue: the queue consumed.
        channel: the aiormq channel deliveries arrive on (acks go back on it).
        publisher: a confirm-mode publisher for follow-ons, retries and dead letters.
        rules: the queue's retry policy.
        publish_to: the exchange follow-on events go to.
        terminal: wire names published without `mandatory` (allowed to have no consumer).
        concurrency: handlers running at once.
        ack_batch: finished deliveries gathered per multiple ack.
        inbox: processed-message memory; None means no deduplication.
        crash_limit: park a message whose handler started this many times without
            finishing (counted by the inbox; without a database, `count_redeliveries`
            counts redeliveries in a header instead).
        count_redeliveries: count redeliveries in a header when the inbox cannot
            count starts (classic queues: RabbitMQ does not count them).
        metrics: where to count deliveries for Prometheus; None counts nothing.
        tracing: records a span per delivery; None (tracing off) only copies
            an incoming trace context onto follow-ons.
    """

    def __init__(
        self,
        *,
        worker: Worker,
        queue: str,
        channel: AbstractChannel,
        publisher: Publisher,
        rules: RetryRules,
        publish_to: str | None,
        terminal: frozenset[str] = frozenset(),
        concurrency: int,
        ack_batch: int,
        inbox: Inbox | None = None,
        counters: Counters | None = None,
        crash_limit: int = 5,
        count_redeliveries: bool = False,
        metrics: WorkerMetrics | None = None,
        tracing: Tracing | None = None,
    ):
        self.worker = worker
        self.queue = queue
        self._name = worker.name
        self._channel = channel
        self._publisher = publisher
        self._rules = rules
        self._publish_to = publish_to
        self._terminal = terminal
        self._inbox = inbox
        self._app_id = publisher.app_id
        self._crash_limit = crash_limit
        self._count_redeliveries = count_redeliveries
        self._slots = Slots(concurrency)
        self._acks = AckBatcher(batch=ack_batch, scatter_after=max(ack_batch, concurrency))
        self._ack_lock = asyncio.Lock()
        #: Tasks holding or waiting for `_ack_lock`.
        self._acking = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.counters = counters if counters is not None else Counters()
        self._metrics = metrics
        self._tracing = tracing
        if metrics is not None:
            metrics.in_flight = lambda: self.in_flight

    # -- the path -------------------------------------------------------------

    async def on_message(self, message: DeliveredMessage) -> None:
        """aiormq's consumer callback: runs in its own task per delivery."""
        delivery = cast(Basic.Deliver, message.delivery)
        tag = cast(int, delivery.delivery_tag)
        self._acks.received()
        self._active += 1
        self._idle.clear()
        try:
            # A redelivered message may have crashed the last process: it runs alone.
            suspect = delivery.redelivered or (
                self._count_redeliveries
                and h.DELIVERIES in (message.header.properties.headers or {})
            )
            async with self._slots.exclusive() if suspect else self._slots.shared:
                if self._stopping:
                    # Shutting down: leave it unacked; closing the channel requeues it.
                    self._acks.abandoned()
                    self.counters.requeued += 1
                    return
                failure = await (
                    self._process(message) if self._tracing is None else self._traced(message)
                )
            if failure is None:
                await self._acknowledge(self._acks.finished, tag)
            else:
                await self._settle(message, *failure)
        except asyncio.CancelledError:
            self._acks.abandoned()  # the channel closed under us; the broker redelivers
            raise
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _process(self, message: DeliveredMessage) -> tuple[Decision, int] | None:
        """Handle one delivery: None when it is done and may be acked, else where it
        goes and the handler calls made so far (across every retry tier)."""
        properties = message.header.properties
        delivery = cast(Basic.Deliver, message.delivery)
        headers: dict[str, Any] = properties.headers or {}
        type_name = properties.message_type
        handler = self._find_handler(type_name, headers, delivery.routing_key or "")
        message_id = properties.message_id or _derived_id(message)
        attempts: int = headers.get(h.ATTEMPTS, 0)
        stats: TypeStats | None = None
        if self._metrics is not None:
            stats = self._metrics.stats(handler.event_type.__wire_name__ if handler else None)
            stats.received += 1
        if delivery.redelivered:
            guard = await self._crash_guard(message_id, headers)
            if guard is not None:
                return guard, attempts
        if handler is None:
            reason = self._unknown_type(type_name, headers)
            return Park("unknown-type", "UnknownEventType", reason), attempts
        try:
            event = decode(handler.event_type, message.body)
        except InvalidPayload as error:
            return Park("decode", "InvalidPayload", str(error)), attempts
        ctx = Context(
            worker=self._name,
            queue=self.queue,
            event_type=handler.event_type.__wire_name__,
            message_id=message_id,
            correlation_id=properties.correlation_id or message_id,
            causation_id=headers.get(h.CAUSATION_ID),
            attempt=attempts + 1,
            redelivered=bool(delivery.redelivered),
            headers=headers,
        )
        started = time.perf_counter()
        try:
            outgoing = await self._rules.call(self._handle, handler.function, event, ctx)
            if outgoing:
                await self._publish(outgoing)
        except HandlerFailed as failed:
            if stats is not None:
                stats.handler_seconds.observe(time.perf_counter() - started)
            retries = headers.get(h.RETRIES, 0)
            return self._rules.decide(failed.error, retries), attempts + failed.attempts
        except PublishFailed as error:
            return self._rules.decide(error, headers.get(h.RETRIES, 0)), attempts + 1
        self.counters.processed += 1
        if stats is not None:
            record_processed(stats, started, headers, properties.timestamp)
        return None

    async def _traced(self, message: DeliveredMessage) -> tuple[Decision, int] | None:
        """`_process` inside a span that is the child of the message's trace context."""
        assert self._tracing is not None
        properties = message.header.properties
        with self._tracing.consuming(
            properties.headers or {},
            queue=self.queue,
            worker=self._name,
            type_name=properties.message_type,
            message_id=properties.message_id,
            correlation_id=properties.correlation_id,
        ) as span:
            failure = await self._process(message)
            if failure is not None:
                self._tracing.failed(span, type(failure[0]).__name__)
            return failure

    async def _handle(self, function: Handler[Any], event: Event, ctx: Context) -> list[Outgoing]:
        """One attempt: claim the message in the inbox, call the handler, keep its follow-ons."""
        inbox = self._inbox
        if inbox is None:
            return self._outgoing(await function(event, ctx), ctx)
        async with inbox.claim(self._name, ctx.message_id, _note(ctx, "processed", [])) as claim:
            if claim.duplicate:
                self.counters.duplicates += 1
                if self._metrics is not None:
                    self._metrics.stats(ctx.event_type).duplicates += 1
                return claim.replay
            ctx.db = claim.db
            outgoing = self._outgoing(await function(event, ctx), ctx)
            claim.keep(outgoing)
            return outgoing

    async def _crash_guard(self, message_id: str, headers: dict[str, Any]) -> Decision | None:
        """Count this start of a suspect delivery; park it past the crash limit."""
        started = None if self._inbox is None else await self._inbox.started(self._name, message_id)
        if started is not None:
            # This start is counted, but the delivery before the first redelivery was
            # not: it ran (or waited) unsuspected. So `started` runs are unfinished.
            return crash_guard(started, self._crash_limit)
        if self._count_redeliveries:
            unfinished = headers.get(h.DELIVERIES, 0) + 1
            return crash_guard(unfinished, self._crash_limit, recount=True)
        return None

    def _find_handler(
        self, type_name: str | None, headers: dict[str, Any], routing_key: str
    ) -> HandlerSpec[Any] | None:
        if not type_name:
            return self.worker.handler_for_routing_key(routing_key)
        version = headers.get(h.VERSION, 1)
        if type(version) is not int:
            version = _version(headers)
        return self.worker.handler_for(type_name, version)

    def _outgoing(self, emitted: Emitted, ctx: Context) -> list[Outgoing]:
        """The handler's result as messages with their ids fixed."""
        if emitted is None:
            return []
        events: Sequence[Event] = (emitted,) if isinstance(emitted, Event) else emitted
        if not events:
            return []
        exchange = self._publish_to
        if exchange is None:
            raise PublishFailed(
                f"worker {self._name!r} emitted {events[0].__wire_name__} but has no "
                "'publish_to' exchange in the topology"
            )
        trace = copied(ctx.headers) if self._tracing is None else self._tracing.outgoing()
        return [
            outgoing_event(
                event,
                exchange=exchange,
                message_id=follow_on_id(ctx.message_id, self._name, i, event),
                correlation_id=ctx.correlation_id,
                causation_id=ctx.message_id,
                mandatory=event.__wire_name__ not in self._terminal,
                app_id=self._app_id,
                trace=trace,
            )
            for i, event in enumerate(events)
        ]

    async def _publish(self, outgoing: list[Outgoing]) -> None:
        if len(outgoing) == 1:
            await self._publisher.publish_outgoing(outgoing[0])
            return
        # Confirms are awaited together; any failure fails the delivery.
        results = await asyncio.gather(
            *(self._publisher.publish_outgoing(o) for o in outgoing), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- settling failures ----------------------------------------------------

    async def _settle(self, message: DeliveredMessage, decision: Decision, attempts: int) -> None:
        """Publish the retry or dead-letter copy with a confirm, then ack the original."""
        tag = cast(int, cast(Basic.Deliver, message.delivery).delivery_tag)
        message_id = message.header.properties.message_id or _derived_id(message)
        if isinstance(decision, Redeliver):
            routing_key, properties = redelivery_copy(
                message,
                decision,
                message_id=message_id,
                worker=self._name,
                queue=self.queue,
                attempts=attempts,
            )
        elif isinstance(decision, Park):
            routing_key, properties = parked_copy(
                message,
                decision,
                message_id=message_id,
                worker=self._name,
                queue=self.queue,
                attempts=attempts,
            )
        else:
            routing_key, properties = recounted_copy(
                message, decision, queue=self.queue, message_id=message_id
            )
        fields = {
            "worker": self._name,
            "queue": self.queue,
            "message_id": message_id,
            "correlation_id": message.header.properties.correlation_id,
            "type": message.header.properties.message_type,
            "attempt": attempts,
        }
        try:
            await self._publisher.publish(
                message.body, exchange="", routing_key=routing_key, properties=properties
            )
        except PublishFailed as error:
            log.error("message.unsettled", to=routing_key, error=str(error), **fields)
            await asyncio.sleep(SETTLE_FAILURE_PAUSE)
            async with self._ack_lock:
                await self._channel.basic_nack(tag, multiple=False, requeue=True, wait=False)
                frames = self._acks.settled(tag)
                for frame_tag, multiple in frames:
                    await self._channel.basic_ack(frame_tag, multiple=multiple, wait=False)
            return
        if self._metrics is not None and not isinstance(decision, Recount):
            self._count_failure(message, decision)
        if isinstance(decision, Recount):
            self.counters.recounted += 1
            log.info("message.recounted", deliveries=decision.deliveries, **fields)
        elif isinstance(decision, Redeliver):
            self.counters.retried += 1
            log.warning(
                "message.retried",
                to=routing_key,
                delay=str(decision.delay),
                error=decision.reason,
                **fields,
            )
        else:
            self.counters.parked += 1
            self.counters.by_reason[decision.reason] = (
                self.counters.by_reason.get(decision.reason, 0) + 1
            )
            log.warning(
                "message.dead_lettered",
                to=routing_key,
                reason=decision.reason,
                error=decision.message,
                **fields,
            )
        if not isinstance(decision, Recount) and self._inbox is not None:
            await self._note_failure(message, message_id, decision)
        await self._acknowledge(self._acks.finished, tag)

    def _count_failure(self, message: DeliveredMessage, decision: Redeliver | Park) -> None:
        assert self._metrics is not None
        properties = message.header.properties
        delivery = cast(Basic.Deliver, message.delivery)
        handler = self._find_handler(
            properties.message_type, properties.headers or {}, delivery.routing_key or ""
        )
        type_name = handler.event_type.__wire_name__ if handler else None
        if isinstance(decision, Redeliver):
            self._metrics.retried(type_name, decision.tier)
        else:
            self._metrics.dead_lettered(type_name, decision.reason)

    async def _note_failure(
        self, message: DeliveredMessage, message_id: str, decision: Redeliver | Park
    ) -> None:
        """Add a retry or a dead letter to the saga's timeline; never fails the delivery."""
        assert self._inbox is not None
        properties = message.header.properties
        headers: dict[str, Any] = properties.headers or {}
        outcome = "retried" if isinstance(decision, Redeliver) else "dead-lettered"
        detail = decision.reason if isinstance(decision, Redeliver) else decision.message
        note = EventNote(
            properties.correlation_id or message_id,
            message_id,
            headers.get(h.CAUSATION_ID),
            properties.message_type or "?",
            self._name,
            outcome,
            [],
            detail,
        )
        try:
            await self._inbox.note(note)
        except Exception as error:  # the timeline is a record, not part of the message path
            log.warning("timeline.unwritten", message_id=message_id, error=str(error))

    def _unknown_type(self, type_name: str | None, headers: dict[str, Any]) -> str:
        handled = (
            ", ".join(
                sorted(
                    f"{s.event_type.__wire_name__} v{s.event_type.__version__}"
                    for s in self.worker.handlers
                )
            )
            or "nothing"
        )
        if type_name:
            what = f"type {type_name!r} version {_version(headers)}"
        else:
            what = "a message without a 'type' property whose routing key matches no contract"
        return f"worker {self._name!r} has no handler for {what} (handles: {handled})"

    # -- acks and shutdown ----------------------------------------------------

    async def _acknowledge(self, decide: Callable[..., list[Frame]], *args: int) -> None:
        """Decide the ack frames and send them, both under one lock.

        Deciding outside the lock would let a newer multiple ack overtake an
        older one, which then names a tag already settled: RabbitMQ closes the
        channel for that (PRECONDITION_FAILED, unknown delivery tag).
        """
        frames: list[Frame] | None = None
        if self._acking == 0:
            # Nobody holds or waits for the lock: decide without it. Most
            # deliveries decide no frame and are done; otherwise the lock is free
            # and taken at once, so no later decision can be sent before this one.
            frames = decide(*args)
        if frames is None or frames:
            self._acking += 1
            try:
                async with self._ack_lock:
                    for tag, multiple in decide(*args) if frames is None else frames:
                        await self._channel.basic_ack(tag, multiple=multiple, wait=False)
            finally:
                self._acking -= 1
        if self._ack_timer is None and self._acks.due:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(ACK_DELAY, self._flush_later)

    def _flush_later(self) -> None:
        self._ack_timer = None
        if self._acks.due:
            task = asyncio.get_running_loop().create_task(self._flush_quietly())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self._acknowledge(self._acks.flush)
        except (
            ConnectionError,
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
        ) as error:
            # The channel is gone: the broker redelivers these and dedupe absorbs them.
            log.warning("acks.unsent", queue=self.queue, error=str(error))

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
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        await self._acknowledge(self._acks.flush)
        return finished

    @property
    def in_flight(self) -> int:
        """Deliveries received and not yet settled."""
        return self._acks.in_flight


def _note(ctx: Context, outcome: str, emitted: list[str], detail: str | None = None) -> EventNote:
    return EventNote(
        ctx.correlation_id,
        ctx.message_id,
        ctx.causation_id,
        ctx.event_type,
        ctx.worker,
        outcome,
        emitted,
        detail,
    )


def _derived_id(message: DeliveredMessage) -> str:
    """The stable id of a message its publisher sent without one."""
    delivery = cast(Basic.Deliver, message.delivery)
    name = message.header.properties.message_type or delivery.routing_key or ""
    return derive_message_id(name, message.body)


def _version(headers: dict[str, Any]) -> int:
    value = headers.get(h.VERSION, 1)
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1
