"""Documented usage of `workers.testing` and the pytest plugin that must pass mypy --strict.

A line marked `type: ignore[...]` must fail type checking (see handlers.py).
"""

from __future__ import annotations

from contracts import Event
from workers import Context, Worker, testing
from workers.pytest_plugin import FleetBroker
from workers.testing import DeadLetter, Tap


class DoughMixed(Event, frozen=True, kw_only=True):
    __routing_key__ = "dough.mixed"

    batch: str


class DoughRisen(Event, frozen=True, kw_only=True):
    __routing_key__ = "dough.risen"

    batch: str


proofer = Worker("proofer")


def used(*values: object) -> None:
    """Keeps the typed names below from being unused."""


@proofer.handles(DoughMixed)
async def rise(event: DoughMixed, ctx: Context) -> DoughRisen | None:
    return DoughRisen(batch=event.batch) if ctx.attempt < 3 else None


async def a_handler_alone() -> None:
    """A unit test: a context with defaults, the handler's result as a list."""
    ctx: Context = testing.context(message_id="m-1", attempt=2, db=None)
    events: list[Event] = testing.emitted(await rise(DoughMixed(batch="b-1"), ctx))
    called: list[Event] = await testing.call(proofer, DoughMixed(batch="b-1"), ctx)
    assert events == called


async def a_handler_misused() -> None:
    testing.context(attempt="2")  # type: ignore[arg-type]
    testing.context("m-1")  # type: ignore[call-arg]
    await testing.call(proofer, "b-1")  # type: ignore[arg-type]
    testing.emitted("not an event")  # type: ignore[arg-type]


async def waiting_for_a_fact() -> None:
    """`eventually` returns what the check returned, sync or async."""

    async def depth() -> int:
        return 3

    counted: int = await testing.eventually(depth, what="three in the queue", timeout=5)
    found: str = await testing.eventually(lambda: "o-1", what="o-1 stored")
    blocked: bool = testing.eventually_blocking(lambda: True, what="ready", interval=0.5)
    used(counted, found, blocked)


async def waiting_misused() -> None:
    await testing.eventually(lambda: True)  # type: ignore[call-overload]
    testing.eventually_blocking(lambda: True, what="ready", pause="1s")  # type: ignore[arg-type]


async def end_to_end(fleet_broker: FleetBroker) -> None:
    """An end-to-end test: the worker in process, a tap, waits typed by their contract."""
    async with fleet_broker.running("proofer"), fleet_broker.tap("bakery") as seen:
        message_id: str = await fleet_broker.publish(DoughMixed(batch="b-1"))
        risen: DoughRisen = await seen.next(DoughRisen)
        taken: DoughRisen = await fleet_broker.take("risen", DoughRisen, timeout=5)
        poison: str = await fleet_broker.publish_body("bakery", "dough.mixed", b"{", type="X")
        parked: DeadLetter = await fleet_broker.dead_lettered("proofer", reason="decode")
        reason: str | None = parked.reason
        tap: Tap = seen
    worker = fleet_broker.process("proofer", database=True)
    used(worker.pid, message_id, risen, taken, poison, reason, tap)


async def end_to_end_misused(fleet_broker: FleetBroker) -> None:
    async with fleet_broker.tap("bakery") as seen:
        mixed: DoughMixed = await seen.next(DoughRisen)  # type: ignore[arg-type]
    await fleet_broker.publish({"batch": "b-1"})  # type: ignore[arg-type]
    used(mixed)
