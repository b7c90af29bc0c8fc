"""h (issue 18): `fleet stream replay` throughput, a stream into a queue, in events/s.

The stream `bench-stream` is filled once per run with the bench's OrderPlaced
(persistent, fleet's wire format); each round a fleet process replays all of it
(`--since 1d`, no --type, no --rate) into the empty classic queue
`bench-replayed`: the window's ends found, every event read over the stream
protocol, published with confirms and `mandatory` (256 in flight), the last
confirm awaited and the connections closed. The rate is events over that whole
call, start-up included, as an operator waits for it; every event must arrive.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import FLEET
from tests.bench.process import ChildFailed
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

NAME = "stream replay"
LABEL = "fleet stream replay"


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="events/s", higher_is_better=True, baseline=LABEL)
    events = bench.config.sizes.replay
    bench.progress(f"{NAME}: filling {layout.STREAM} with {events:,} events …")
    await bench.queues.fill(layout.STREAM, events, tag=bench.tag())
    rounds = bench.config.rounds
    for number in range(1, rounds + 1):
        where = f"{NAME} · round {number}/{rounds} · {LABEL}"
        bench.progress(f"{where} …")
        job = FLEET.job(role="replay", url=bench.url, queue=layout.REPLAYED, expected=events)
        outcome = await collector.attempt(NAME, LABEL, _replay(bench, job))
        if outcome is None:
            continue
        cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
        collector.add(NAME, LABEL, outcome.rate, cpu=cpu)
        bench.progress(f"{where}: {outcome.rate:,.0f} events/s, {cpu or 0:.0%} CPU")
    return collector.series


async def _replay(bench: Bench, job: Job) -> Outcome:
    await bench.clean()
    child = await bench.spawn(job)
    try:
        await child.ready()
        child.go()
        outcome = await child.result(bench.timeout(job.expected))
    finally:
        await child.stop()
    arrived = await bench.queues.depth(job.queue)
    if outcome.count != job.expected or arrived != job.expected:
        raise ChildFailed(
            f"replayed {outcome.count} of {job.expected} events; {arrived} arrived in {job.queue}"
        )
    return outcome
