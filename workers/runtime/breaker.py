"""A worker's circuit breaker (`breaker` in the topology) on its consume channel.

It observes each delivery's fate through the hooks (`on_finished`) and feeds
it to the pure `Circuit`; when the circuit opens it stops consuming
(basic.cancel), so the queue keeps what the worker would only have retried.
After the cool-down it takes exactly one message with basic.get and runs it
through the consumer like any delivery: the probe. Its success consumes
again (closed); its failure waits another cool-down (open).

    consuming ─on_finished: opened─▶ basic.cancel ─cool-down─▶ basic.get one
      ▲                                   ▲                      │ (empty: poll)
      └──────── basic.consume ◀─probe ok──┴──────probe failed────┘

Deliveries in flight when it opens settle on their own path (retry, park)
and decide nothing. A worker without a breaker has no such observer, and
consumes as before: it costs nothing on the message path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

from topology.breaker import CircuitBreaker
from workers.runtime.circuit import Circuit, Transition
from workers.runtime.consumer import CONNECTION_ERRORS
from workers.runtime.delivery import Delivery
from workers.runtime.hooks import DeliveryObserver
from workers.runtime.retry import Decision, Park, Redeliver

log = structlog.get_logger("fleet.worker")

#: Seconds between basic.gets while half-open finds the queue empty.
PROBE_POLL = 0.5

OnMessage = Callable[[DeliveredMessage], Coroutine[Any, Any, None]]


def failed(decision: Decision | None) -> bool | None:
    """What a delivery's fate says of the downstream: True for a transient failure
    (a retry, or retries exhausted), False for a success, None for nothing (a
    permanent error, a bad message: the handler's downstream was not the cause)."""
    if decision is None:
        return False
    if isinstance(decision, Redeliver):
        return True
    if isinstance(decision, Park) and decision.reason == "retries-exhausted":
        return True
    return None


def circuit_of(spec: CircuitBreaker) -> Circuit:
    """The pure circuit a topology's `breaker` declares."""
    return Circuit(
        threshold=spec.threshold,
        cool_down=spec.cool_down.seconds,
        error_rate=spec.error_rate,
        window=spec.rate_window.seconds,
        min_calls=spec.rate_min_calls,
    )


class Breaker(DeliveryObserver):
    """Consumes `queue` on `channel` while the circuit is closed.

    Args:
        circuit: the decisions.
        worker: the worker's name (log lines).
        queue: the queue consumed.
        channel: the consume channel (its prefetch already set).
        clock: the monotonic clock the circuit is fed.
    """

    def __init__(
        self,
        circuit: Circuit,
        *,
        worker: str,
        queue: str,
        channel: AbstractChannel,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.circuit = circuit
        self.worker = worker
        self.queue = queue
        self._channel = channel
        self._clock = clock
        self._on_message: OnMessage | None = None
        self._tag: str | None = None  # the consumer's, while consuming
        self._probe: int | None = None  # the probe's delivery tag, while it runs
        self._tripped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()

    # -- the hook -------------------------------------------------------------

    def on_finished(self, delivery: Delivery, decision: Decision | None) -> None:
        verdict = failed(decision)
        is_probe = self._probe is not None and delivery.tag == self._probe
        if verdict is None:
            return
        now = self._clock()
        circuit = self.circuit
        change = circuit.probed(verdict, now) if is_probe else circuit.record(verdict, now)
        if change is not None:
            self._transitioned(change)

    # -- consuming ------------------------------------------------------------

    async def start(self, on_message: OnMessage) -> str:
        """Consume, and watch the circuit; the consumer tag."""
        self._on_message = on_message
        tag = await self._consume()
        self._task = asyncio.create_task(self._run(), name=f"breaker {self.worker}")
        return tag

    async def stop(self) -> None:
        """Stop watching and consuming (shutdown); a running probe finishes on its own."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._cancel()

    def abandon(self) -> None:
        """The connection is gone: stop watching, with nothing to send."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            await self._watch()
        except CONNECTION_ERRORS as error:  # the session sees the channel go and reconnects
            log.warning("worker.breaker.stopped", worker=self.worker, error=str(error))

    async def _watch(self) -> None:
        while True:
            await self._tripped.wait()
            self._tripped.clear()
            await self._cancel()
            while self.circuit.state != "closed":
                await self._cooled_down()
                await self._run_probe()
            await self._consume()

    async def _cooled_down(self) -> None:
        """Wait out an open circuit's cool-down (it is half-open after)."""
        reopens = self.circuit.reopens_at
        if reopens is None:
            return
        await asyncio.sleep(max(0.0, reopens - self._clock()))
        change = self.circuit.due(self._clock())
        if change is not None:
            self._transitioned(change)

    async def _run_probe(self) -> None:
        """Take one message and run it through the consumer; its outcome decides."""
        assert self._on_message is not None
        message = await self._channel.basic_get(self.queue)
        while isinstance(message.delivery, Basic.GetEmpty):
            await asyncio.sleep(PROBE_POLL)
            message = await self._channel.basic_get(self.queue)
        self._probe = getattr(message.delivery, "delivery_tag", None)
        log.info(
            "worker.breaker.probing",
            worker=self.worker,
            queue=self.queue,
            message_id=message.header.properties.message_id,
        )
        # Its own task, as aiormq runs each delivery: a shutdown that stops this
        # loop must not cancel the probe halfway (drain waits for it instead).
        task = asyncio.create_task(self._on_message(message))
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)
        try:
            await asyncio.shield(task)
        finally:
            self._probe = None

    async def _consume(self) -> str:
        assert self._on_message is not None
        ok = await self._channel.basic_consume(self.queue, self._on_message)
        self._tag = ok.consumer_tag or ""
        return self._tag

    async def _cancel(self) -> None:
        tag, self._tag = self._tag, None
        if tag is not None:
            await self._channel.basic_cancel(tag)

    def _transitioned(self, change: Transition) -> None:
        event = {"open": "opened", "half-open": "half_open", "closed": "closed"}[change.after]
        log.warning(
            f"worker.breaker.{event}",
            worker=self.worker,
            queue=self.queue,
            reason=change.reason,
            was=change.before,
            **({"cool_down": self.circuit.cool_down} if change.after == "open" else {}),
        )
        if change.before == "closed" and change.after == "open":
            self._tripped.set()
