"""A worker's stage of the message path: what the consumer does with a delivery
between reading it and settling it.

    find the handler by `type` and version (or routing key) ─▶ decode into the contract
    (a version the worker does not handle: decoded as its own, then carried up or
    down to the handler's through the contract's upcasters or downcasters)
    ─▶ claim the message id in the inbox (a duplicate replays its follow-ons)
    ─▶ call the handler, retrying in process ─▶ publish its follow-ons with confirms

A batch handler's deliveries join a batch instead (`batching`), which is claimed,
called and published once; when the batch fails, each of them goes on here alone.

It returns None when the delivery is done, else where it goes (`retry.Decision`)
and the handler calls made so far; the consumer carries that out.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

import structlog

from contracts import Event, InvalidPayload, decode
from contracts.evolution import Evolution, Step, default_evolution
from contracts.faults import is_fault
from workers.context import Context
from workers.errors import PublishFailed
from workers.runtime.batching import Gatherer, Member
from workers.runtime.delivery import Delivery
from workers.runtime.faults import fault_message
from workers.runtime.hooks import Observers
from workers.runtime.inbox import EventNote, Inbox
from workers.runtime.limits import Limits
from workers.runtime.outgoing import Outgoing, follow_on_id, outgoing_event
from workers.runtime.publisher import Publisher
from workers.runtime.retry import Decision, HandlerFailed, Park, RetryRules, describe, truncate
from workers.runtime.slots import Slots
from workers.worker import Emitted, Handler, HandlerSpec, Worker

Outcome = tuple[Decision, int] | None

log = structlog.get_logger("fleet.batch")


class HandlerStage:
    """Runs one worker's handlers on its deliveries.

    Args:
        worker: the handlers.
        queue: the queue consumed.
        rules: the queue's retry policy.
        publisher: a confirm-mode publisher for follow-ons and faults.
        publish_to: the exchange follow-on events go to.
        faults: the exchange parked messages are announced on as Fault events, if any.
        terminal: wire names published without `mandatory` (allowed to have no consumer).
        inbox: processed-message memory; None means no deduplication.
        observers: told of duplicates and of handler time.
        trace_headers: the trace context follow-ons carry, from the delivery's headers.
        evolution: the upcasters and downcasters that carry other versions to a handler's.
        limits: the worker's rate limits; None (no limit) adds nothing to the path.
    """

    def __init__(
        self,
        *,
        worker: Worker,
        queue: str,
        rules: RetryRules,
        publisher: Publisher,
        publish_to: str | None,
        faults: str | None = None,
        terminal: frozenset[str] = frozenset(),
        inbox: Inbox | None = None,
        observers: Observers,
        trace_headers: Callable[[Mapping[str, Any]], dict[str, str] | None],
        evolution: Evolution = default_evolution,
        limits: Limits | None = None,
    ):
        self.worker = worker
        self.name = worker.name
        self.queue = queue
        self._rules = rules
        self._publisher = publisher
        self._publish_to = publish_to
        self._faults = faults
        self._terminal = terminal
        self._inbox = inbox
        # An inbox without a timeline (in memory) is given no note: one object less
        # per delivery.
        self._notes = getattr(inbox, "keeps_timeline", True)
        self._observers = observers
        self._trace_headers = trace_headers
        self._evolution = evolution
        self._limits = limits
        self._routes: dict[tuple[str, int], tuple[HandlerSpec[Any], list[Step]]] = {}
        self._app_id = publisher.app_id
        #: Batch handlers' gatherers by event type; None when the worker has none.
        self._gatherers: dict[type[Event], Gatherer[Any]] | None = {
            spec.event_type: Gatherer(
                spec.batch.max_size, spec.batch.max_wait, partial(self._run_batch, spec)
            )
            for spec in worker.batches
            if spec.batch is not None
        } or None
        self._slots: Slots | None = None

    def label(self, delivery: Delivery) -> str | None:
        """The wire name of the contract its handler takes (of any version); None
        when the worker takes no version of it."""
        handler = self.handler(delivery)
        if handler is not None:
            wire_name: str = handler.event_type.__wire_name__
            return wire_name
        name = delivery.type_name
        return name if name and self.worker.handles_contract(name) else None

    def handler(self, delivery: Delivery) -> HandlerSpec[Any] | None:
        """The handler for its `type` and version (or, without a type, its routing key)."""
        if delivery.version is None:
            return None
        if not delivery.type_name:
            return self.worker.handler_for_routing_key(delivery.routing_key)
        return self.worker.handler_for(delivery.type_name, delivery.version)

    def evolve(self, delivery: Delivery) -> tuple[HandlerSpec[Any], list[Step]] | Park:
        """The handler of another version of the delivery's contract, and the steps
        (upcasters, downcasters) that carry the message to it; or why there is none.

        Routes found are kept: they are few (registered versions only), and a
        producer still on an old version sends every message that way."""
        name, version = delivery.type_name or "", delivery.version or 1
        known = self._routes.get((name, version))
        if known is not None:
            return known
        found = self._evolve(delivery, name, version)
        if not isinstance(found, Park):
            self._routes[(name, version)] = found
        return found

    def _evolve(
        self, delivery: Delivery, name: str, version: int
    ) -> tuple[HandlerSpec[Any], list[Step]] | Park:
        handled = self.worker.versions_handled(name)
        if not handled:
            return unknown_type(self.worker, delivery)
        steps = self._evolution.route(name, version, list(handled))
        if steps is None:
            versions = ", ".join(f"v{v}" for v in sorted(handled))
            reason = (
                f"worker {self.name!r} handles {name} {versions}, and no upcaster or "
                f"downcaster leads there from v{version}"
            )
            return Park("version-unsupported", "VersionUnsupported", truncate(reason))
        return handled[steps[-1].target.__version__], steps

    async def process(self, delivery: Delivery, label: str | None) -> Outcome:
        """Decode, handle and publish; None when done, else the decision and attempts."""
        attempts = delivery.attempts
        handler = self.handler(delivery)
        steps: list[Step] = []
        if handler is None:
            evolved = (
                self.evolve(delivery) if delivery.type_name else unknown_type(self.worker, delivery)
            )
            if isinstance(evolved, Park):
                return evolved, attempts
            handler, steps = evolved
        try:
            event = decode(steps[0].source if steps else handler.event_type, delivery.body)
        except InvalidPayload as error:
            return Park("decode", "InvalidPayload", truncate(str(error))), attempts
        try:
            for step in steps:
                event = step(event)
        except Exception as error:
            return Park("upcast-failed", type(error).__name__, truncate(describe(error))), attempts
        ctx = Context(
            worker=self.name,
            queue=self.queue,
            event_type=handler.event_type.__wire_name__,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            causation_id=delivery.causation_id,
            attempt=attempts + 1,
            redelivered=delivery.redelivered,
            headers=delivery.headers,
        )
        slot = None
        if self._gatherers is not None and self.gathers(delivery):
            if await self._gatherers[handler.event_type].join(event, ctx, delivery):
                return None
            # Its batch failed: it goes on alone, in a consumer slot of its own.
            slot = self._slots.shared if self._slots is not None else None
            if slot is not None:
                await slot.acquire()
        try:
            started = time.perf_counter()
            try:
                outgoing = await self._rules.call(
                    self._handle, handler.function, event, ctx, delivery
                )
            except HandlerFailed as failed:
                self._observers.handled(delivery, label, time.perf_counter() - started, False)
                return self._rules.decide(
                    failed.error, delivery.retries
                ), attempts + failed.attempts
            self._observers.handled(delivery, label, time.perf_counter() - started, True)
            try:
                if outgoing:
                    await self._publish(outgoing)
            except PublishFailed as error:
                return self._rules.decide(error, delivery.retries), attempts + 1
            return None
        finally:
            if slot is not None:
                slot.release()

    # -- batch handlers -------------------------------------------------------

    def gather_in(self, slots: Slots) -> Callable[[Delivery], bool] | None:
        """For the consumer: whether a delivery joins a batch (it then takes no slot
        while it waits; its batch runs in one of `slots`), or None when the worker
        has no batch handler."""
        if self._gatherers is None:
            return None
        self._slots = slots
        return self.gathers

    def gathers(self, delivery: Delivery) -> bool:
        """Whether the delivery joins a batch: its handler (of its version, or the one
        its upcasters or downcasters lead to) takes batches, and it is no crash suspect
        (redelivered, or counted), which runs alone."""
        if delivery.redelivered or delivery.deliveries is not None:
            return False
        handler = self.handler(delivery)
        if handler is None and delivery.type_name:
            evolved = self.evolve(delivery)
            handler = None if isinstance(evolved, Park) else evolved[0]
        return handler is not None and handler.batch is not None

    async def _run_batch(self, spec: HandlerSpec[Any], members: list[Member]) -> bool:
        """One call for the whole batch, its claims and its follow-ons' confirms; True when
        all succeeded. A failure is not retried as a batch: each member goes on alone."""
        label = spec.event_type.__wire_name__
        slot = self._slots.shared if self._slots is not None else nullcontext()
        async with slot:
            started = time.perf_counter()
            try:
                outgoing = await self._call_batch(spec, members)
                if outgoing:
                    await self._publish(outgoing)
            except Exception as error:
                log.warning(
                    "batch.failed",
                    worker=self.name,
                    queue=self.queue,
                    type=label,
                    size=len(members),
                    error=truncate(describe(error)),
                )
                return False
        seconds = time.perf_counter() - started
        for member in members:
            self._observers.handled(member.delivery, label, seconds, True)
        return True

    async def _call_batch(self, spec: HandlerSpec[Any], members: list[Member]) -> list[Outgoing]:
        """Claim the batch's messages, call the handler with the new ones, keep its
        follow-ons; returns what to publish (with the duplicates' stored follow-ons)."""
        assert spec.batch is not None
        function = spec.batch.function
        first = members[0].ctx
        ctx = Context(
            worker=self.name,
            queue=self.queue,
            event_type=first.event_type,
            message_id=batch_id(m.ctx.message_id for m in members),
            correlation_id=first.correlation_id,
            headers=first.headers,
        )
        inbox = self._inbox
        if inbox is None:
            return self._outgoing(await function([m.event for m in members], ctx), ctx)
        async with inbox.claim_batch(self.name, [_note(m.ctx) for m in members]) as claim:
            fresh = set(claim.fresh)
            events = []
            for member in members:
                message_id = member.ctx.message_id
                if message_id in fresh:
                    fresh.discard(message_id)  # a second copy in the batch is a duplicate
                    events.append(member.event)
                else:
                    self._observers.duplicate(member.delivery, ctx.event_type)
            if claim.db is not None:
                ctx.db = claim.db
            outgoing = self._outgoing(await function(events, ctx), ctx) if events else []
            claim.keep(outgoing)
            return [*claim.replay, *outgoing]

    @property
    def pace(self) -> Callable[[Delivery], tuple[float, str | None]] | None:
        """The consumer's turn-taker when the worker has rate limits, else None."""
        return None if self._limits is None else self._turn

    def _turn(self, delivery: Delivery) -> tuple[float, str | None]:
        """Seconds the delivery must wait for its handler's turn, and its label. A
        delivery no handler takes waits for nothing: it is parked without a call."""
        assert self._limits is not None
        label = self.label(delivery)
        return (0.0 if label is None else self._limits.wait(label)), label

    async def announce(self, delivery: Delivery, decision: Park) -> None:
        """Publish the Fault event of a message about to be parked (before parking it:
        should parking fail, the message comes back and is announced again, under
        the same id)."""
        handler, steps = self.handler(delivery), []
        if handler is None and delivery.type_name:
            evolved = self.evolve(delivery)  # another version's handler takes it
            handler, steps = (None, []) if isinstance(evolved, Park) else evolved
        if self._faults is None or handler is None or is_fault(handler.event_type):
            # Of a type it does not know it cannot say what it was; and a parked
            # fault is not announced again (no Fault[Fault[...]]).
            return
        original = self._as_handled(delivery, handler, steps)
        fault = fault_message(
            delivery,
            decision,
            handler,
            original,
            exchange=self._faults,
            worker=self.name,
            queue=self.queue,
            app_id=self._app_id,
        )
        await self._publisher.publish_outgoing(fault)

    def _as_handled(
        self, delivery: Delivery, handler: HandlerSpec[Any], steps: list[Step]
    ) -> Event | None:
        """The message as its handler would have seen it; None if it never got that far."""
        try:
            event: Event = decode(steps[0].source if steps else handler.event_type, delivery.body)
            for step in steps:
                event = step(event)
        except Exception:  # it never decoded, or its upcaster failed
            return None
        return event

    async def _handle(
        self, function: Handler[Any], event: Event, ctx: Context, delivery: Delivery
    ) -> list[Outgoing]:
        """One attempt: claim the message in the inbox, call the handler, keep its follow-ons."""
        inbox = self._inbox
        if inbox is None:
            return self._outgoing(await function(event, ctx), ctx)
        note = _note(ctx) if self._notes else None
        async with inbox.claim(self.name, ctx.message_id, note) as claim:
            if claim.duplicate:
                self._observers.duplicate(delivery, ctx.event_type)
                return claim.replay
            if claim.db is not None:
                ctx.db = claim.db
            outgoing = self._outgoing(await function(event, ctx), ctx)
            claim.keep(outgoing)
            return outgoing

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
                f"worker {self.name!r} emitted {events[0].__wire_name__} but has no "
                "'publish_to' exchange in the topology"
            )
        trace = self._trace_headers(ctx.headers)
        return [
            outgoing_event(
                event,
                exchange=exchange,
                message_id=follow_on_id(ctx.message_id, self.name, i, event),
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


def unknown_type(worker: Worker, delivery: Delivery) -> Park:
    """The parking of a delivery `worker` has no handler for, naming what it handles."""
    handled = (
        ", ".join(
            sorted(
                f"{s.event_type.__wire_name__} v{s.event_type.__version__}" for s in worker.handlers
            )
        )
        or "nothing"
    )
    if delivery.type_name:
        what = f"type {delivery.type_name!r} version {delivery.version}"
    else:
        what = "a message without a 'type' property whose routing key matches no contract"
    reason = f"worker {worker.name!r} has no handler for {what} (handles: {handled})"
    return Park("unknown-type", "UnknownEventType", truncate(reason))


def batch_id(message_ids: Iterable[str]) -> str:
    """The id of a batch call, for its follow-ons: derived from its messages' ids,
    so the same batch handled again emits the same follow-on ids."""
    digest = hashlib.blake2b(digest_size=16)
    for message_id in sorted(message_ids):
        digest.update(message_id.encode() + b"\x00")
    return "batch-" + digest.hexdigest()


def _note(ctx: Context) -> EventNote:
    """The timeline row the inbox writes with the claim (`processed`)."""
    return EventNote(
        ctx.correlation_id,
        ctx.message_id,
        ctx.causation_id,
        ctx.event_type,
        ctx.worker,
        "processed",
        [],
        None,
    )
