"""Documented usage that must pass mypy --strict: `make test` checks this file.

A line marked `type: ignore[...]` must fail type checking; with
`warn_unused_ignores` (strict) the check fails if it ever stops failing.
"""

from __future__ import annotations

from fulfilment.contracts import OrderPlaced, StockRejected, StockReserved

from contracts import Fault
from workers import Context, Worker

inventory = Worker("inventory")


@inventory.handles(OrderPlaced)
async def reserve(event: OrderPlaced, ctx: Context) -> StockReserved | StockRejected:
    return StockRejected(order_id=event.order_id, reason=ctx.message_id)


@inventory.handles(OrderPlaced)  # type: ignore[arg-type]
async def wrong_event(event: StockReserved, ctx: Context) -> None:
    """A handler whose parameter is not the registered event is rejected."""


@inventory.handles(OrderPlaced)  # type: ignore[arg-type]
async def wrong_return(event: OrderPlaced, ctx: Context) -> str:
    """A handler must return events (or None)."""
    return "not an event"


def not_keyword_only() -> None:
    StockRejected("o-1", "reason")  # type: ignore[call-arg]


@inventory.handles(Fault.of(OrderPlaced))
async def placement_failed(fault: Fault[OrderPlaced], ctx: Context) -> None:
    """A fault handler sees the parked message with its own contract type."""
    if fault.message is not None:
        print(fault.message.order_id)


@inventory.handles(Fault.of(OrderPlaced))  # type: ignore[arg-type]
async def wrong_fault(fault: Fault[StockReserved], ctx: Context) -> None:
    """The fault of one contract is not the fault of another."""


loader = Worker("loader")


@loader.handles_batch(OrderPlaced, max_size=100, max_wait=0.5)
async def store(events: list[OrderPlaced], ctx: Context) -> list[StockRejected]:
    return [StockRejected(order_id=e.order_id, reason="none left") for e in events]


@loader.handles_batch(OrderPlaced)  # type: ignore[arg-type]
async def one_not_many(event: OrderPlaced, ctx: Context) -> None:
    """A batch handler takes a list."""


@loader.handles_batch(OrderPlaced)  # type: ignore[arg-type]
async def wrong_batch(events: list[StockReserved], ctx: Context) -> None:
    """A list of the events it is registered for."""
