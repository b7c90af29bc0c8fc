"""d. publish throughput with publisher confirms, many publishes in flight.

fleet's Publisher (the runtime's follow-on path: build the event's message,
publish `mandatory` on a confirm channel, await the confirm) vs aio-pika's
`exchange.publish` on a confirm channel; each with 256 publishes awaiting their
confirms at once. Every message must reach the queue bound to the exchange.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import AIO_PIKA, AIO_PIKA_UVLOOP, BASELINE, FLEET, running
from tests.bench.process import ChildFailed
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

NAME = "publish confirmed"
ENTRANTS = (FLEET, AIO_PIKA, AIO_PIKA_UVLOOP)
LANES = 256


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="msg/s", higher_is_better=True, baseline=BASELINE)
    rounds = bench.config.rounds
    for number in range(1, rounds + 1):
        for entrant in running(ENTRANTS, extras=bench.config.extras):
            where = f"{NAME} · round {number}/{rounds} · {entrant.label}"
            bench.progress(f"{where} …")
            job = entrant.job(
                role="publish",
                url=bench.url,
                queue=layout.PUBLISHED,
                expected=bench.config.sizes.publish,
                lanes=LANES,
                tag=bench.tag(),
            )
            outcome = await collector.attempt(NAME, entrant.label, _publish(bench, job))
            if outcome is None:
                continue
            cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
            collector.add(NAME, entrant.label, outcome.rate, cpu=cpu)
            bench.progress(f"{where}: {outcome.rate:,.0f} msg/s, {cpu or 0:.0%} CPU")
    return collector.series


async def _publish(bench: Bench, job: Job) -> Outcome:
    await bench.clean()
    child = await bench.spawn(job)
    try:
        await child.ready()
        child.go()
        outcome = await child.result(bench.timeout(job.expected))
    finally:
        await child.stop()
    arrived = await bench.queues.depth(layout.PUBLISHED)
    if arrived != job.expected:
        raise ChildFailed(f"{job.contender}: {arrived} of {job.expected} messages arrived")
    return outcome
