"""b. saga step: decode, publish one follow-on event with a publisher confirm, ack.

fleet's worker whose handler returns a StockReserved (the runtime publishes it
with `mandatory` and waits for the confirm before acking), in the bench's
harness and as `fleet worker run`, vs the same written by hand with aio-pika
vs FastStream's subscriber + publisher, in steady state: 100,000 messages, the
first 10,000 untimed; each contender's RSS at its last message and its growth
since the warm-up are rows too. After each measurement every follow-on must be
in the follow-on queue.
"""

from __future__ import annotations

from dataclasses import replace

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import (
    AIO_PIKA,
    AIO_PIKA_UVLOOP,
    BASELINE,
    FASTSTREAM,
    FLEET,
    FLEET_CLI,
    FLEET_PUBLIC_API,
    Entrant,
    running,
)
from tests.bench.process import ChildFailed
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.throughput import drain_rounds

NAME = "saga step"
# FastStream's saga step is the bench's slowest measurement (100,000 messages at
# ~1,600 msg/s: a minute a round); a default run leaves it to --extras (and --all)
# so that it fits in 10 minutes (its drain too: scenarios/drain.py).
FASTSTREAM_SAGA = replace(FASTSTREAM, extra=True)
ENTRANTS = (FLEET, FLEET_CLI, FLEET_PUBLIC_API, AIO_PIKA, AIO_PIKA_UVLOOP, FASTSTREAM_SAGA)


async def run(bench: Bench) -> list[Series]:
    def job(entrant: Entrant, tag: str) -> Job:
        return entrant.job(
            role="saga",
            url=bench.url,
            queue=layout.DRAIN,
            expected=bench.config.sizes.saga,
            warmup_messages=bench.config.sizes.warmup,
            prefetch=layout.PREFETCH,
            tag=tag,
        )

    async def follow_ons_arrived(job: Job, outcome: Outcome) -> None:
        published = await bench.queues.depth(layout.FOLLOW)
        if published != job.expected:
            raise ChildFailed(
                f"{job.contender}: {published} follow-ons for {job.expected} messages"
            )

    entrants = running(ENTRANTS, extras=bench.config.extras)
    return await drain_rounds(
        bench,
        NAME,
        entrants,
        job,
        baseline=BASELINE,
        check=follow_ons_arrived,
        steady=True,
        rounds=bench.config.steady_rounds,
    )
