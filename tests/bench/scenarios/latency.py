"""c. end-to-end latency: publish → handler entry, p50/p95/p99, at fixed offered loads.

Per round and contender, one consumer process (already consuming an empty
queue) and one paced publisher process, which offers each load in turn for a
fixed time. The publisher stamps each message with the monotonic clock; the
consumer takes the difference when its handler is entered, after decoding. The
first 10% of each phase are left out (warm-up). fleet vs bare aio-pika.

Before the publisher starts, the consumer's resident set is sampled while it
idles on the empty queue: scenario e's "rss idle" row.
"""

from __future__ import annotations

import asyncio

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import AIO_PIKA, BASELINE, FLEET, Entrant
from tests.bench.process import ChildFailed, RssSampler
from tests.bench.protocol import Job, Outcome, phases
from tests.bench.results import Series
from tests.bench.scenarios.collect import MIB, Collector

NAME = "latency"
RSS = "rss idle"
ENTRANTS = (FLEET, AIO_PIKA)
PERCENTILES = ("p50", "p95", "p99")


async def run(bench: Bench) -> list[Series]:
    sizes = bench.config.sizes
    collector = Collector(bench, unit="ms", higher_is_better=False, baseline=BASELINE)
    memory = Collector(bench, unit="MiB", higher_is_better=False, baseline=BASELINE)
    rounds = bench.config.rounds
    first = f"latency {sizes.latency_rates[0]}/s p99"
    for number in range(1, rounds + 1):
        for entrant in ENTRANTS:
            where = f"latency · round {number}/{rounds} · {entrant.label}"
            bench.progress(f"{where} …")
            measured = await collector.attempt(first, entrant.label, _paced(bench, entrant))
            if measured is None:
                continue
            outcome, paced, idle = measured
            memory.add(RSS, entrant.label, idle / MIB, others=collector.last_others)
            ms = outcome.latency_ms
            for label in phases(sizes.latency_rates, sizes.latency_seconds):
                details = {
                    "max_ms": ms[f"{label} max"],
                    "publisher_behind_max_ms": paced.extra.get(f"{label} behind_max_ms", 0.0),
                }
                for p in PERCENTILES:
                    collector.add(
                        f"latency {label} {p}", entrant.label, ms[f"{label} {p}"], details=details
                    )
                bench.progress(
                    f"{where} · {label}: p50 {ms[f'{label} p50']:.2f} ms, "
                    f"p99 {ms[f'{label} p99']:.2f} ms"
                )
    return collector.series + memory.series


async def _paced(bench: Bench, entrant: Entrant) -> tuple[Outcome, Outcome, int]:
    """Run a consumer and the paced publisher.

    Returns:
        The consumer's outcome, the publisher's, and the consumer's idle peak RSS (bytes).
    """
    sizes = bench.config.sizes
    await bench.clean()
    tag = bench.tag()
    total = sum(phases(sizes.latency_rates, sizes.latency_seconds).values())
    common = {
        "url": bench.url,
        "queue": layout.LATENCY,
        "expected": total,
        "rates": sizes.latency_rates,
        "seconds": sizes.latency_seconds,
        "tag": tag,
    }
    consumer = await bench.spawn(entrant.job(role="latency", prefetch=layout.PREFETCH, **common))
    pacer = await bench.spawn(Job(contender="pacer", role="pace", **common))  # type: ignore[arg-type]
    try:
        await consumer.ready()
        consumer.go()
        await consumer.consuming()
        sampler = RssSampler(consumer.pid)
        sampler.start()
        await asyncio.sleep(sizes.rss_idle_seconds)
        idle = await sampler.stop()
        await pacer.ready()
        pacer.go()
        paced = await pacer.result(bench.timeout(total))
        outcome = await consumer.result(bench.timeout(total))
    finally:
        await pacer.stop()
        await consumer.stop()
    if outcome.count != total or not outcome.latency_ms:
        raise ChildFailed(f"{entrant.label} received {outcome.count} of {total}")
    return outcome, paced, idle
