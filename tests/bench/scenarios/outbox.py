"""h (issue 17). The transactional outbox: what it costs the producer, how fast its
relay publishes, and how long an event takes from commit to consumer.

- `outbox producer`: a shop's transaction (insert an order row, commit) on 8
  connections, without the outbox (the baseline) and with its OrderPlaced
  recorded in the same transaction: in the order's own statement
  (`Outbox.execute`, the way the docs recommend), or by `Outbox.add` after
  it, its wake-ups sent from the outbox's own connection (`Outbox.waking`)
  or, last, on the producers' connections; transactions per second.
  `outbox producer, order + lines` repeats the first two with the order's
  three lines written in the same transaction (one executemany), as the web
  shop example's checkout does.
- `outbox relay`: fleet's Relay publishing committed rows (one key per order,
  confirmed, `mandatory`, marked sent after the confirm) against fleet's own
  Publisher with 256 confirms in flight (the publish scenario's `fleet`, the
  baseline); msg/s. Every message must reach the queue.
- `outbox latency 1000/s`: a shop committing 1,000 orders per second through the
  outbox, a relay process, and fleet's latency worker; commit → handler entry,
  p50/p95/p99. The baseline is the same worker fed directly by the paced
  publisher at the same rate (publish → handler entry).

A scratch database is created for the scenario and dropped afterwards; the
outbox and shop tables are emptied before each measurement.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.contenders.outbox import SHOP_SCHEMA
from tests.bench.lineup import FLEET, Entrant
from tests.bench.process import ChildFailed
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector
from tests.bench.scenarios.inbox import scratch_database
from tests.bench.scenarios.publish import LANES, _publish
from workers.outbox import install

PRODUCER = "outbox producer"
#: The same with the order's three lines written too: the web shop's checkout.
PRODUCER_LINES = "outbox producer, order + lines"
RELAY = "outbox relay"
RATE = 1000
LATENCY = f"outbox latency {RATE}/s"
PERCENTILES = ("p50", "p95", "p99")

PLAIN = Entrant("without outbox", "outbox", "uvloop")
WITH = Entrant("with outbox", "outbox", "uvloop")
#: The event recorded by `Outbox.add`, a statement after the order's.
WITH_ADD = Entrant("with outbox, add", "outbox", "uvloop")
#: `add`, without `Outbox.waking`: wake-ups on the producers' own connections.
WITH_CALLER = Entrant("with outbox, add, caller wakes", "outbox", "uvloop")
RELAYED = Entrant("fleet outbox relay", "outbox", "uvloop")
DIRECT = Entrant("fleet direct", "fleet", "uvloop")
THROUGH = Entrant("fleet through the outbox", "fleet", "uvloop")
#: The producer measurements of a round: (scenario, entrant, role), in order.
PRODUCER_RUNS = (
    (PRODUCER, PLAIN, "tx-plain"),
    (PRODUCER, WITH, "tx-outbox"),
    (PRODUCER, WITH_ADD, "tx-outbox-add"),
    (PRODUCER, WITH_CALLER, "tx-outbox-caller"),
    (PRODUCER_LINES, PLAIN, "tx-plain-lines"),
    (PRODUCER_LINES, WITH, "tx-outbox-lines"),
)
#: Connections of the shop (a web app's pool).
SHOP_CONNECTIONS = 8


async def run(bench: Bench) -> list[Series]:
    sizes = bench.config.sizes
    producer = Collector(bench, unit="tx/s", higher_is_better=True, baseline=PLAIN.label)
    relay = Collector(bench, unit="msg/s", higher_is_better=True, baseline=DIRECT.label)
    latency = Collector(bench, unit="ms", higher_is_better=False, baseline=DIRECT.label)
    rounds = bench.config.rounds
    async with scratch_database(bench.config.database_url) as database:
        await _install(database)
        for number in range(1, rounds + 1):
            where = f"outbox · round {number}/{rounds}"
            for scenario, entrant, role in PRODUCER_RUNS:
                bench.progress(f"{where} · {scenario} · {entrant.label} …")
                job = entrant.job(
                    role=role,
                    url=bench.url,
                    database_url=database,
                    expected=sizes.outbox,
                    lanes=SHOP_CONNECTIONS,
                    tag=bench.tag(),
                )
                outcome = await producer.attempt(scenario, entrant.label, _once(bench, job))
                if outcome is not None:
                    _add(producer, scenario, entrant, outcome)
                    bench.progress(
                        f"{where} · {scenario} · {entrant.label}: {outcome.rate:,.0f} tx/s"
                    )

            bench.progress(f"{where} · relay {DIRECT.label} …")
            direct = DIRECT.job(
                role="publish",
                url=bench.url,
                queue=layout.PUBLISHED,
                expected=sizes.publish,
                lanes=LANES,
                tag=bench.tag(),
            )
            outcome = await relay.attempt(RELAY, DIRECT.label, _publish(bench, direct))
            if outcome is not None:
                _add(relay, RELAY, DIRECT, outcome)
                bench.progress(f"{where} · relay {DIRECT.label}: {outcome.rate:,.0f} msg/s")
            bench.progress(f"{where} · relay {RELAYED.label} …")
            relayed = RELAYED.job(
                role="relay",
                url=bench.url,
                database_url=database,
                expected=sizes.publish,
                tag=bench.tag(),
            )
            outcome = await relay.attempt(RELAY, RELAYED.label, _relayed(bench, relayed))
            if outcome is not None:
                _add(relay, RELAY, RELAYED, outcome)
                bench.progress(f"{where} · relay {RELAYED.label}: {outcome.rate:,.0f} msg/s")

            for entrant in (DIRECT, THROUGH):
                bench.progress(f"{where} · latency {entrant.label} …")
                measured = await latency.attempt(
                    f"{LATENCY} p99", entrant.label, _latency(bench, entrant, database)
                )
                if measured is None:
                    continue
                ms = {k.removeprefix(f"{RATE}/s "): v for k, v in measured.latency_ms.items()}
                for p in PERCENTILES:
                    latency.add(
                        f"{LATENCY} {p}", entrant.label, ms[p], details={"max_ms": ms["max"]}
                    )
                bench.progress(
                    f"{where} · latency {entrant.label}: p50 {ms['p50']:.2f} ms, "
                    f"p99 {ms['p99']:.2f} ms"
                )
    return producer.series + relay.series + latency.series


def _add(collector: Collector, scenario: str, entrant: Entrant, outcome: Outcome) -> None:
    cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
    collector.add(scenario, entrant.label, outcome.rate, cpu=cpu)


async def _install(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await install(connection)
        await connection.execute(SHOP_SCHEMA)
    finally:
        await connection.close()


async def _reset(database: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "TRUNCATE fleet_outbox, fleet_outbox_sent, bench_shop_orders, bench_shop_lines"
        )
    finally:
        await connection.close()


async def _once(bench: Bench, job: Job) -> Outcome:
    """One producer run on empty tables; every transaction must have committed."""
    assert job.database_url is not None
    await _reset(job.database_url)
    child = await bench.spawn(job)
    try:
        await child.ready()
        child.go()
        outcome = await child.result(bench.timeout(job.expected))
    finally:
        await child.stop()
    if outcome.count != job.expected:
        raise ChildFailed(f"{job.role}: {outcome.count} of {job.expected} transactions")
    return outcome


async def _relayed(bench: Bench, job: Job) -> Outcome:
    """The relay on `job.expected` committed rows; every message must arrive."""
    await bench.clean()
    outcome = await _once(bench, job)
    arrived = await bench.queues.depth(layout.PUBLISHED)
    if arrived != job.expected:
        raise ChildFailed(f"relay: {arrived} of {job.expected} messages arrived")
    return outcome


async def _latency(bench: Bench, entrant: Entrant, database: str) -> Outcome:
    """fleet's latency worker fed at RATE/s: by the paced publisher (`DIRECT`) or by
    a shop committing through the outbox and a relay process (`THROUGH`)."""
    sizes = bench.config.sizes
    total = int(RATE * sizes.latency_seconds)
    await bench.clean()
    await _reset(database)
    tag, seconds = bench.tag(), sizes.latency_seconds
    consumer_job = FLEET.job(
        role="latency",
        url=bench.url,
        queue=layout.LATENCY,
        prefetch=layout.PREFETCH,
        expected=total,
        rates=(RATE,),
        seconds=seconds,
        tag=tag,
    )
    pacer = Job(
        contender="pacer",
        role="pace",
        url=bench.url,
        queue=layout.LATENCY,
        expected=total,
        rates=(RATE,),
        seconds=seconds,
        tag=tag,
    )
    shop = Job(
        contender="outbox",
        role="outbox-pace",
        url=bench.url,
        database_url=database,
        lanes=SHOP_CONNECTIONS,
        expected=total,
        rates=(RATE,),
        seconds=seconds,
        tag=tag,
    )
    relay = Job(
        contender="outbox", role="relay-live", url=bench.url, database_url=database, expected=total
    )
    feeders = [pacer] if entrant is DIRECT else [relay, shop]
    consumer = await bench.spawn(consumer_job)
    children = [await bench.spawn(job) for job in feeders]
    try:
        await consumer.ready()
        consumer.go()
        await consumer.consuming()
        for child in children:
            await child.ready()
            child.go()
        await asyncio.gather(*(c.result(bench.timeout(total)) for c in children))
        outcome = await consumer.result(bench.timeout(total))
    finally:
        for child in children:
            await child.stop()
        await consumer.stop()
    if outcome.count != total or not outcome.latency_ms:
        raise ChildFailed(f"{entrant.label} received {outcome.count} of {total}")
    return outcome
