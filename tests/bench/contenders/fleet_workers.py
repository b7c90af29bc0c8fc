"""The fleet workers the bench runs, named in `layout.TOPOLOGY`.

Plain handlers, as a user writes them: `drain` does nothing, `saga` returns one
follow-on event (published with a confirm by the runtime), `latency` notes when
it was entered. Each tells the process's Probe, which the contender installs
before the worker starts. `batch_insert` and `single_insert` store each order
as a row through ctx.db: one `executemany` per batch of 500, or one INSERT per
message (scenario batch).

Under `fleet worker run` (the "fleet worker run" contender) nobody installs a
Probe: `PROBE` is then built from the `FLEET_BENCH_PROBE` variable, and prints
the bench's result line on stdout when its last message is handled (see
`fleet_cli`).
"""

from __future__ import annotations

from fulfilment.contracts.inventory import StockReserved
from fulfilment.contracts.orders import OrderPlaced

from tests.bench.contenders.fleet_cli import probe_from_environment
from tests.bench.payload import SENT_NS, reserve
from workers import Context, Worker
from workers.worker import Resources

#: Replaced by the in-process contender before `run_worker` starts.
PROBE = probe_from_environment()

drain = Worker("drain")
drain_quorum = Worker("drain_quorum")  # the same handler, on a quorum queue
drain_grouped = Worker("drain_grouped")  # the same handler, with the inbox's group commit
drain_alone = Worker("drain_alone")  # and with a transaction per delivery
stream_drain = Worker("stream_drain")  # the same handler on a stream (scenario stream drain)
quorum_drain = Worker("quorum_drain")  # and on a quorum queue
saga = Worker("saga")
latency = Worker("latency")
batch_insert = Worker("batch_insert", database=True)
single_insert = Worker("single_insert", database=True)

ROWS = """
CREATE TABLE IF NOT EXISTS bench_rows (
    order_id text NOT NULL, customer_id text NOT NULL, total_cents bigint NOT NULL
)
"""
INSERT_ROW = "INSERT INTO bench_rows (order_id, customer_id, total_cents) VALUES ($1, $2, $3)"


@drain.handles(OrderPlaced)
async def do_nothing(event: OrderPlaced, ctx: Context) -> None:
    PROBE.tick()


drain_quorum.handles(OrderPlaced)(do_nothing)
drain_grouped.handles(OrderPlaced)(do_nothing)
drain_alone.handles(OrderPlaced)(do_nothing)
stream_drain.handles(OrderPlaced)(do_nothing)
quorum_drain.handles(OrderPlaced)(do_nothing)


@saga.handles(OrderPlaced)
async def reserve_stock(event: OrderPlaced, ctx: Context) -> StockReserved:
    PROBE.tick()
    return reserve(event)


@latency.handles(OrderPlaced)
async def note_arrival(event: OrderPlaced, ctx: Context) -> None:
    PROBE.sent_at(int(ctx.headers[SENT_NS]))  # the outbox's headers are text


@batch_insert.on_startup
@single_insert.on_startup
async def create_rows(resources: Resources) -> None:
    async with resources.pool.acquire() as connection:
        await connection.execute(ROWS)


@batch_insert.handles_batch(OrderPlaced)
async def insert_rows(events: list[OrderPlaced], ctx: Context) -> None:
    await ctx.db.executemany(
        INSERT_ROW, [(e.order_id, e.customer_id, e.total_cents) for e in events]
    )
    for _ in events:
        PROBE.tick()


@single_insert.handles(OrderPlaced)
async def insert_row(event: OrderPlaced, ctx: Context) -> None:
    await ctx.db.execute(INSERT_ROW, event.order_id, event.customer_id, event.total_cents)
    PROBE.tick()
