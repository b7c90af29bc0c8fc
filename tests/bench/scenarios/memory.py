"""e. peak RSS of a worker process: idle, then under load.

The worker starts on an empty queue; psutil samples its resident set every
20 ms while it idles (the idle peak), then while the parent publishes a burst
of messages into its queue as fast as the broker takes them and the worker
drains them (the peak under load). fleet vs bare aio-pika; the child's own
peak (getrusage) is kept in the JSON as a cross-check.
"""

from __future__ import annotations

import asyncio

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import AIO_PIKA, BASELINE, FLEET
from tests.bench.process import ChildFailed, RssSampler
from tests.bench.protocol import Job
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

NAME = "rss"
ENTRANTS = (FLEET, AIO_PIKA)
MIB = 1024 * 1024


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="MiB", higher_is_better=False, baseline=BASELINE)
    rounds = bench.config.rounds
    for number in range(1, rounds + 1):
        for entrant in ENTRANTS:
            where = f"rss · round {number}/{rounds} · {entrant.label}"
            bench.progress(f"{where} …")
            job = entrant.job(
                role="drain",
                url=bench.url,
                queue=layout.DRAIN,
                expected=bench.config.sizes.rss_load,
                prefetch=layout.PREFETCH,
                tag=bench.tag(),
            )
            measured = await collector.attempt("rss under load", entrant.label, _watch(bench, job))
            if measured is None:
                continue
            idle, loaded, own_peak = measured
            collector.add("rss idle", entrant.label, idle / MIB)
            details = {"getrusage_peak_mib": own_peak}
            collector.add("rss under load", entrant.label, loaded / MIB, details=details)
            bench.progress(f"{where}: idle {idle / MIB:.1f} MiB, under load {loaded / MIB:.1f} MiB")
    return collector.series


async def _watch(bench: Bench, job: Job) -> tuple[int, int, float]:
    """(idle peak, peak under load) in bytes, and the child's own peak in MiB."""
    await bench.clean()
    child = await bench.spawn(job)
    sampler: RssSampler | None = None
    try:
        await child.ready()
        child.go()
        await child.consuming()
        sampler = RssSampler(child.pid)
        sampler.start()
        await asyncio.sleep(bench.config.sizes.rss_idle_seconds)
        idle = sampler.reset()
        await bench.queues.fill(job.queue, job.expected, tag=job.tag, wait=False)
        outcome = await child.result(bench.timeout(job.expected))
        loaded = await sampler.stop()
    finally:
        if sampler is not None:
            await sampler.stop()
        await child.stop()
    if outcome.count != job.expected:
        raise ChildFailed(f"{job.contender} consumed {outcome.count} of {job.expected}")
    return idle, loaded, outcome.max_rss_kb / 1024
