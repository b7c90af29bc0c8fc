"""Issue 18: fleet's stream worker against bare rstream, and against fleet's own
quorum-queue worker, on the same events, in msg/s.

The stream `bench-stream-drain` is filled once per run with the bench's
OrderPlaced (persistent, ~300 bytes, fleet's wire format, published over AMQP
0.9.1 as any producer would). Each round, in turn:

- `rstream`, the baseline: bare rstream reading it from the first offset with
  `amqp_decoder`, a msgspec decode into the contract, a count, and one stored
  offset after the last message (`contenders/rstream.py`);
- `fleet stream`: fleet's stream worker with the drain's do-nothing handler,
  `from: first` under a consumer name new each round; it ends when the runtime
  logs `worker.stopped`, after its last offset is stored;
- `fleet quorum queue`: the same worker on the quorum queue `bench-quorum`,
  pre-filled with as many of the same events each round (prefetch and
  concurrency 256), as the drain scenario measures a classic queue.

The second table row group divides fleet's stream by fleet's quorum queue.
A round drains 3 x N messages (and fills N into the quorum queue), so the
scenario runs at most `ROUNDS` rounds.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import Entrant
from tests.bench.process import ChildFailed
from tests.bench.protocol import Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

NAME = "stream drain"
VERSUS_QUEUE = "stream vs queue"
RSTREAM = Entrant("rstream", "rstream", "uvloop")
STREAM = Entrant("fleet stream", "fleet", "uvloop")
QUORUM = Entrant("fleet quorum queue", "fleet", "uvloop")
ROUNDS = 3


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="msg/s", higher_is_better=True, baseline=RSTREAM.label)
    versus = Collector(bench, unit="msg/s", higher_is_better=True, baseline=QUORUM.label)
    events = bench.config.sizes.stream
    bench.progress(f"{NAME}: filling {layout.STREAM_DRAIN} with {events:,} events …")
    await bench.queues.fill(layout.STREAM_DRAIN, events, tag=bench.tag())
    rounds = min(bench.config.rounds, ROUNDS)
    for number in range(1, rounds + 1):
        for entrant in (RSTREAM, STREAM, QUORUM):
            where = f"{NAME} · round {number}/{rounds} · {entrant.label}"
            bench.progress(f"{where} …")
            outcome = await collector.attempt(NAME, entrant.label, _measure(bench, entrant, events))
            if outcome is None:
                continue
            cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
            collector.add(NAME, entrant.label, outcome.rate, cpu=cpu, details=outcome.extra)
            if entrant is not RSTREAM:
                versus.add(
                    VERSUS_QUEUE, entrant.label, outcome.rate, cpu=cpu, others=collector.last_others
                )
            bench.progress(f"{where}: {outcome.rate:,.0f} msg/s, {cpu or 0:.0%} CPU")
    return collector.series + versus.series


async def _measure(bench: Bench, entrant: Entrant, events: int) -> Outcome:
    tag = bench.tag()
    if entrant is QUORUM:
        job = entrant.job(
            role="quorum-drain",
            url=bench.url,
            queue=layout.QUORUM,
            expected=events,
            prefetch=layout.PREFETCH,
            tag=tag,
        )
        return (await bench.drain(job)).outcome
    role = "stream-drain" if entrant is STREAM else "drain"
    job = entrant.job(role=role, url=bench.url, queue=layout.STREAM_DRAIN, expected=events, tag=tag)
    child = await bench.spawn(job)
    try:
        await child.ready()
        child.go()
        outcome = await child.result(bench.timeout(events))
    finally:
        await child.stop()
    if outcome.count != events:
        raise ChildFailed(f"{entrant.label} read {outcome.count} of {events} events")
    return outcome
