"""c. end-to-end latency: publish → handler entry, p50/p95/p99, at fixed offered loads.

A paced publisher in its own process stamps each message with the monotonic
clock; the consumer (already consuming an empty queue) takes the difference
when its handler is entered, after decoding. The first 10% of each run are
left out (connection warm-up). fleet vs bare aio-pika.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import AIO_PIKA, BASELINE, FLEET, Entrant
from tests.bench.process import ChildFailed
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

NAME = "latency"
ENTRANTS = (FLEET, AIO_PIKA)
PERCENTILES = ("p50", "p95", "p99")


async def run(bench: Bench) -> list[Series]:
    sizes = bench.config.sizes
    collector = Collector(bench, unit="ms", higher_is_better=False, baseline=BASELINE)
    rounds = bench.config.rounds
    for rate in sizes.latency_rates:
        total = int(rate * sizes.latency_seconds)
        for number in range(1, rounds + 1):
            for entrant in ENTRANTS:
                where = f"latency {rate}/s · round {number}/{rounds} · {entrant.label}"
                bench.progress(f"{where} …")
                measured = await collector.attempt(
                    f"latency {rate}/s p99", entrant.label, _paced(bench, entrant, rate, total)
                )
                if measured is None:
                    continue
                outcome, paced = measured
                details = {
                    "max_ms": outcome.latency_ms["max"],
                    "offered_rate": paced.rate,
                    "publisher_behind_max_ms": paced.extra.get("behind_max_ms", 0.0),
                }
                ms = outcome.latency_ms
                for p in PERCENTILES:
                    collector.add(f"latency {rate}/s {p}", entrant.label, ms[p], details=details)
                bench.progress(
                    f"{where}: p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms "
                    f"(offered {paced.rate:,.0f} msg/s)"
                )
    return collector.series


async def _paced(bench: Bench, entrant: Entrant, rate: int, total: int) -> tuple[Outcome, Outcome]:
    """Run a consumer and the paced publisher; returns (consumer's, publisher's) outcomes."""
    await bench.clean()
    tag = bench.tag()
    consumer = await bench.spawn(
        entrant.job(
            role="latency",
            url=bench.url,
            queue=layout.LATENCY,
            expected=total,
            prefetch=layout.PREFETCH,
            tag=tag,
        )
    )
    pace = Job(
        contender="pacer",
        role="pace",
        url=bench.url,
        queue=layout.LATENCY,
        expected=total,
        rate=rate,
        tag=tag,
    )
    pacer = await bench.spawn(pace)
    try:
        await consumer.ready()
        consumer.go()
        await consumer.consuming()
        await pacer.ready()
        pacer.go()
        paced = await pacer.result(bench.timeout(total))
        outcome = await consumer.result(bench.timeout(total))
    finally:
        await pacer.stop()
        await consumer.stop()
    if outcome.count != total or not outcome.latency_ms:
        raise ChildFailed(f"{entrant.label} received {outcome.count} of {total}")
    return outcome, paced
