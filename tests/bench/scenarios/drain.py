"""a. drain: decode into the contract, a handler that does nothing, ack.

fleet's worker (the real runtime, in the bench's harness and as `fleet worker
run`) vs bare aio-pika (msgspec decode, one ack per message) on asyncio and on
uvloop vs a FastStream subscriber with a pydantic model vs the C-client
ceiling (librabbitmq, one ack per delivery, no decoding), each draining the
same pre-filled queue in steady state: 100,000 messages, the first 10,000
untimed. Then fleet and the C client drain the same on a quorum queue, so the
report can give fleet's share of the ceiling on both queue types.

The peak resident set of each classic drain (psutil, every 20 ms) is scenario
e's "rss under load" row: a full-speed drain with 256 deliveries in flight is
the heaviest load a worker sees; each contender's RSS at its last message and
its growth since the warm-up are rows too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.contenders.cclient import Unavailable
from tests.bench.lineup import (
    AIO_PIKA,
    AIO_PIKA_UVLOOP,
    BASELINE,
    C_CLIENT,
    FASTSTREAM,
    FLEET,
    FLEET_CLI,
    FLEET_PUBLIC_API,
    Entrant,
    running,
)
from tests.bench.protocol import Job
from tests.bench.results import Series, Skipped
from tests.bench.scenarios.throughput import MakeJob, drain_rounds

NAME = "drain"
QUORUM = "drain, quorum queue"
RSS = "rss under load"
# FastStream's drain (100,000 messages at ~4,300 msg/s: half a minute a round)
# is left to --extras (and --all) too: with it a quiet default run took 11
# minutes, over its 10.
FASTSTREAM_DRAIN = replace(FASTSTREAM, extra=True)
ENTRANTS = (
    FLEET,
    FLEET_CLI,
    FLEET_PUBLIC_API,
    AIO_PIKA,
    AIO_PIKA_UVLOOP,
    FASTSTREAM_DRAIN,
    C_CLIENT,
)
QUORUM_ENTRANTS = (FLEET, C_CLIENT)


async def run(bench: Bench) -> list[Series]:
    rounds = bench.config.steady_rounds
    with_ceiling = await _ceiling(bench)
    classic = await drain_rounds(
        bench,
        NAME,
        _lineup(bench, ENTRANTS, with_ceiling),
        _jobs(bench, layout.DRAIN, "drain"),
        baseline=BASELINE,
        rss_row=RSS,
        steady=True,
        rounds=rounds,
    )
    quorum = await drain_rounds(
        bench,
        QUORUM,
        _lineup(bench, QUORUM_ENTRANTS, with_ceiling),
        _jobs(bench, layout.DRAIN_QUORUM, "drain-quorum"),
        baseline=C_CLIENT.label if with_ceiling else FLEET.label,
        rounds=rounds,
    )
    return classic + quorum


def _jobs(bench: Bench, queue: str, role: str) -> MakeJob:
    def job(entrant: Entrant, tag: str) -> Job:
        return entrant.job(
            role=role,
            url=bench.url,
            queue=queue,
            expected=bench.config.sizes.drain,
            warmup_messages=bench.config.sizes.warmup,
            prefetch=layout.PREFETCH,
            tag=tag,
        )

    return job


def _lineup(bench: Bench, entrants: Sequence[Entrant], with_ceiling: bool) -> list[Entrant]:
    chosen = running(entrants, extras=bench.config.extras)
    return [e for e in chosen if with_ceiling or e is not C_CLIENT]


async def _ceiling(bench: Bench) -> bool:
    """Whether the C client runs; if not, one line says why (and the report lists it)."""
    try:
        await bench.c_client()
    except Unavailable as exc:
        bench.notes.append(Skipped(f"{NAME}: {C_CLIENT.label}", str(exc)))
        bench.progress(f"{NAME}: {C_CLIENT.label} left out: {exc}")
        return False
    return True
