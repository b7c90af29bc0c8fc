"""The fleet workers the bench runs, named in `layout.TOPOLOGY`.

Plain handlers, as a user writes them: `drain` does nothing, `saga` returns one
follow-on event (published with a confirm by the runtime), `latency` notes when
it was entered. Each tells the process's Probe, which the contender installs
before the worker starts.
"""

from __future__ import annotations

from fulfilment.contracts.inventory import StockReserved
from fulfilment.contracts.orders import OrderPlaced

from tests.bench.payload import SENT_NS, reserve
from tests.bench.probe import Probe
from workers import Context, Worker

#: Replaced by the contender before `run_worker` starts.
PROBE = Probe(0)

drain = Worker("drain")
drain_grouped = Worker("drain_grouped")  # the same handler, with the inbox's group commit
drain_alone = Worker("drain_alone")  # and with a transaction per delivery
saga = Worker("saga")
latency = Worker("latency")


@drain.handles(OrderPlaced)
async def do_nothing(event: OrderPlaced, ctx: Context) -> None:
    PROBE.tick()


drain_grouped.handles(OrderPlaced)(do_nothing)
drain_alone.handles(OrderPlaced)(do_nothing)


@saga.handles(OrderPlaced)
async def reserve_stock(event: OrderPlaced, ctx: Context) -> StockReserved:
    PROBE.tick()
    return reserve(event)


@latency.handles(OrderPlaced)
async def note_arrival(event: OrderPlaced, ctx: Context) -> None:
    PROBE.sent_at(int(ctx.headers[SENT_NS]))  # the outbox's headers are text
