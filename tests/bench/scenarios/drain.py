"""a. drain: decode into the contract, a handler that does nothing, ack.

fleet's worker (real runtime) vs bare aio-pika (msgspec decode, one ack per
message) on asyncio and on uvloop vs a FastStream subscriber with a pydantic
model, each draining the same pre-filled queue.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import AIO_PIKA, AIO_PIKA_UVLOOP, BASELINE, FASTSTREAM, FLEET, Entrant
from tests.bench.protocol import Job
from tests.bench.results import Series
from tests.bench.scenarios.throughput import drain_rounds

NAME = "drain"
ENTRANTS = (FLEET, AIO_PIKA, AIO_PIKA_UVLOOP, FASTSTREAM)


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

    return await drain_rounds(bench, NAME, ENTRANTS, job, baseline=BASELINE)
