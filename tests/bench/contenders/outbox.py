"""The outbox scenario's processes: a shop's transactions, with and without the outbox,
its relay, and a shop paced at a fixed rate of orders.

Roles:
    `tx-plain`: `job.expected` transactions on `job.lanes` connections, each
        inserting one order row into `bench_shop_orders` and committing: what
        the shop does without fleet.
    `tx-outbox`: the same transaction with the order's OrderPlaced recorded in
        the order's own statement (`Outbox.execute`), in `outbox.transaction`
        (which wakes the relay after the commit), inside `outbox.waking`
        (wake-ups sent from the outbox's own connection): what the outbox
        costs the producer.
    `tx-outbox-add`: the same with the event recorded by `Outbox.add`, a
        statement of its own after the order's.
    `tx-outbox-caller`: `tx-outbox-add` without `waking`: each wake-up goes on
        the producer's own connection (coalesced between them).
    `tx-plain-lines`, `tx-outbox-lines`: `tx-plain` and `tx-outbox` with the
        order's lines written too (one `executemany`), as the web shop example's
        checkout does.
    `relay`: fills `fleet_outbox` with `job.expected` committed rows before it
        says ready, then runs fleet's Relay on them; the clock runs from the
        moment the relay holds its lock to the moment every row is marked sent
        (after its confirm).
    `outbox-pace`: the `tx-outbox` transaction at `job.rates[0]` orders per
        second for `job.seconds`, to the exchange bound to the latency queue;
        each row carries `time.monotonic_ns()` taken just before its commit in
        the bench's sent header, so the latency consumer measures commit to
        handler entry (the commit's own fsync included).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import asyncpg
import structlog

from tests.bench import layout
from tests.bench.child import Signals, run_loop
from tests.bench.payload import ORDER, SENT_NS
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome
from workers.outbox import Outbox
from workers.outbox.relay import Relay
from workers.outbox.schema import INSERT_ASYNCPG

SHOP_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_shop_orders (
    order_id    text        PRIMARY KEY,
    customer_id text        NOT NULL,
    total_cents bigint      NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bench_shop_lines (
    order_id    text    NOT NULL,
    line        integer NOT NULL,
    sku         text    NOT NULL,
    qty         integer NOT NULL,
    price_cents bigint  NOT NULL,
    PRIMARY KEY (order_id, line)
);
"""
INSERT_LINE = (
    "INSERT INTO bench_shop_lines (order_id, line, sku, qty, price_cents) "
    "VALUES ($1, $2, $3, $4, $5)"
)
INSERT_ORDER = (
    "INSERT INTO bench_shop_orders (order_id, customer_id, total_cents) VALUES ($1, $2, $3)"
)
#: Rows per transaction when the relay's table is filled.
FILL_CHUNK = 1000
#: How often the relay's process looks at its own counter (it runs in the same loop).
WATCH_EVERY = 0.002


def run(job: Job, signals: Signals) -> Outcome:
    # stdout carries the protocol: the relay's log lines go to stderr, warnings only.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    roles = {
        "tx-plain": lambda: _transactions(job, signals, outbox=None),
        "tx-outbox": lambda: _transactions(
            job, signals, outbox=Outbox(layout.ORDERS), background_wakeups=True, combined=True
        ),
        "tx-outbox-add": lambda: _transactions(
            job, signals, outbox=Outbox(layout.ORDERS), background_wakeups=True
        ),
        "tx-outbox-caller": lambda: _transactions(job, signals, outbox=Outbox(layout.ORDERS)),
        "tx-plain-lines": lambda: _transactions(job, signals, outbox=None, lines=True),
        "tx-outbox-lines": lambda: _transactions(
            job,
            signals,
            outbox=Outbox(layout.ORDERS),
            background_wakeups=True,
            lines=True,
            combined=True,
        ),
        "relay": lambda: _relay(job, signals, fill=True),
        "relay-live": lambda: _relay(job, signals, fill=False),
        "outbox-pace": lambda: _paced(job, signals),
    }
    return run_loop("uvloop", roles[job.role]())


async def _transactions(
    job: Job,
    signals: Signals,
    *,
    outbox: Outbox | None,
    background_wakeups: bool = False,
    lines: bool = False,
    combined: bool = False,
) -> Outcome:
    if outbox is not None and background_wakeups:
        async with outbox.waking(job.database_url or ""):
            return await _transactions(job, signals, outbox=outbox, lines=lines, combined=combined)
    pool = await asyncpg.create_pool(job.database_url, min_size=job.lanes, max_size=job.lanes)
    indexes = iter(range(job.expected))
    probe = Probe(job.expected)

    async def lane(connection: Any) -> None:  # a pool's connection proxy
        for i in indexes:  # shared: each lane takes the next order
            order_id = f"{job.tag}-{i}"
            if outbox is None:
                async with connection.transaction():
                    await connection.execute(
                        INSERT_ORDER, order_id, ORDER.customer_id, ORDER.total_cents
                    )
                    if lines:
                        await connection.executemany(INSERT_LINE, _lines(order_id))
            elif combined:
                async with outbox.transaction(connection):  # commits, then wakes the relay
                    await outbox.execute(
                        connection,
                        INSERT_ORDER,
                        order_id,
                        ORDER.customer_id,
                        ORDER.total_cents,
                        event=ORDER,
                        key=order_id,
                        message_id=order_id,
                    )
                    if lines:
                        await connection.executemany(INSERT_LINE, _lines(order_id))
            else:
                async with outbox.transaction(connection):
                    await connection.execute(
                        INSERT_ORDER, order_id, ORDER.customer_id, ORDER.total_cents
                    )
                    if lines:
                        await connection.executemany(INSERT_LINE, _lines(order_id))
                    await outbox.add(connection, ORDER, key=order_id, message_id=order_id)
            probe.tick()

    try:
        connections = [await pool.acquire() for _ in range(job.lanes)]
        await asyncio.to_thread(signals.ready)
        probe.first, probe.cpu_first = now()
        await asyncio.gather(*(lane(c) for c in connections))
        end = now()
        for connection in connections:
            await pool.release(connection)
    finally:
        await pool.close()
    return probe.outcome(*end)


def _lines(order_id: str) -> list[tuple[str, int, str, int, int]]:
    return [
        (order_id, n, line.sku, line.qty, line.unit_price_cents)
        for n, line in enumerate(ORDER.lines, 1)
    ]


async def _relay(job: Job, signals: Signals, *, fill: bool) -> Outcome:
    if fill:
        await _fill(job)
    relay = Relay(job.database_url or "", job.url, name="bench", gauge_every=None, prune_every=3600)
    await asyncio.to_thread(signals.ready)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        await relay.leading.wait()
        probe = Probe(job.expected)
        probe.first, probe.cpu_first = now()
        while relay.stats.published < job.expected:
            if running.done():
                running.result()  # raises what stopped it
                break
            await asyncio.sleep(WATCH_EVERY)
        end = now()
        probe.count = relay.stats.published
    finally:
        stop.set()
        await running
    return probe.outcome(*end)


async def _fill(job: Job) -> None:
    """`job.expected` committed rows, one key per order, in transactions of FILL_CHUNK."""
    outbox = Outbox(layout.ORDERS)
    connection = await asyncpg.connect(job.database_url)
    try:
        for start in range(0, job.expected, FILL_CHUNK):
            ids = range(start, min(job.expected, start + FILL_CHUNK))
            async with connection.transaction():
                rows = [
                    outbox.message(ORDER, key=f"{job.tag}-{i}", message_id=f"{job.tag}-{i}").row()
                    for i in ids
                ]
                await connection.executemany(INSERT_ASYNCPG, rows)
    finally:
        await connection.close()


async def _paced(job: Job, signals: Signals) -> Outcome:
    outbox = Outbox(layout.OUTBOX)
    async with outbox.waking(job.database_url or ""):
        return await _paced_with(outbox, job, signals)


async def _paced_with(outbox: Outbox, job: Job, signals: Signals) -> Outcome:
    rate = job.rates[0]
    total = int(rate * job.seconds)
    pool = await asyncpg.create_pool(job.database_url, min_size=job.lanes, max_size=job.lanes)
    indexes = iter(range(total))
    probe = Probe(total)
    behind = 0.0

    async def lane(connection: Any, start: float) -> None:
        nonlocal behind
        for i in indexes:
            late = time.monotonic() - (start + i / rate)
            if late < 0:
                await asyncio.sleep(-late)
            behind = max(behind, late)
            order_id = f"{job.tag}-{i}"
            async with outbox.transaction(connection):
                await connection.execute(
                    INSERT_ORDER, order_id, ORDER.customer_id, ORDER.total_cents
                )
                await outbox.add(
                    connection,
                    ORDER,
                    key=order_id,
                    message_id=order_id,
                    headers={SENT_NS: str(time.monotonic_ns())},
                )
            probe.tick()

    try:
        connections = [await pool.acquire() for _ in range(job.lanes)]
        await asyncio.to_thread(signals.ready)
        start = time.monotonic()
        await asyncio.gather(*(lane(c, start) for c in connections))
        end = now()
        for connection in connections:
            await pool.release(connection)
    finally:
        await pool.close()
    outcome = probe.outcome(*end)
    outcome.extra = {"behind_max_ms": behind * 1000}
    return outcome
