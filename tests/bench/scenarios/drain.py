"""a. drain: decode into the contract, a handler that does nothing, ack.

fleet's worker (real runtime) vs bare aio-pika (msgspec decode, one ack per
message) on asyncio and on uvloop vs a FastStream subscriber with a pydantic
model, each draining the same pre-filled queue. The peak resident set of each
drain (psutil, every 20 ms) is scenario e's "rss under load" row: a full-speed
drain with 256 deliveries in flight is the heaviest load a worker sees.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import (
    AIO_PIKA,
    AIO_PIKA_UVLOOP,
    BASELINE,
    FASTSTREAM,
    FLEET,
    FLEET_PUBLIC_API,
    Entrant,
    running,
)
from tests.bench.protocol import Job
from tests.bench.results import Series
from tests.bench.scenarios.throughput import drain_rounds

NAME = "drain"
RSS = "rss under load"
ENTRANTS = (FLEET, FLEET_PUBLIC_API, AIO_PIKA, AIO_PIKA_UVLOOP, FASTSTREAM)


async def run(bench: Bench) -> list[Series]:
    def job(entrant: Entrant, tag: str) -> Job:
        return entrant.job(
            role="drain",
            url=bench.url,
            queue=layout.DRAIN,
            expected=bench.config.sizes.drain,
            prefetch=layout.PREFETCH,
            tag=tag,
        )

    entrants = running(ENTRANTS, extras=bench.config.extras)
    return await drain_rounds(bench, NAME, entrants, job, baseline=BASELINE, rss_row=RSS)
