"""The paced publisher of the latency scenario: fixed offered loads, in its own process.

For each rate of the job in turn (a phase of `job.seconds`), message i is due
at start + i / rate; every wake-up publishes whatever is due, each stamped with
`time.monotonic_ns()` in the `x-bench-sent-ns` header just before it is written
(CLOCK_MONOTONIC is one clock for every process on the machine). Phases are
separated by a short pause, so one phase's backlog cannot delay the next. It
publishes on a plain aiormq channel without confirms, so its own cost stays
small on a 2-core machine; the queue is durable and the messages persistent as
everywhere else.
"""

from __future__ import annotations

import asyncio
import time

import aiormq
from aiormq.abc import AbstractChannel

from tests.bench.child import Signals, run_loop
from tests.bench.payload import BODY, properties
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome, phases

PAUSE = 0.3  # seconds between phases


def run(job: Job, signals: Signals) -> Outcome:
    signals.ready()
    return run_loop("uvloop", _pace(job))


async def _pace(job: Job) -> Outcome:
    connection = await aiormq.connect(job.url)
    probe = Probe(job.expected)
    extra: dict[str, float] = {}
    try:
        channel = await connection.channel(publisher_confirms=False)
        sent = 0
        for (label, count), rate in zip(
            phases(job.rates, job.seconds).items(), job.rates, strict=True
        ):
            behind = await _phase(channel, job, rate, range(sent, sent + count), probe)
            extra[f"{label} behind_max_ms"] = behind * 1000
            sent += count
            await asyncio.sleep(PAUSE)
        end = now()
    finally:
        await connection.close()
    outcome = probe.outcome(*end)
    outcome.extra = extra
    return outcome


async def _phase(channel: AbstractChannel, job: Job, rate: int, ids: range, probe: Probe) -> float:
    """Publish message ids `ids` at `rate`; returns the furthest it fell behind, seconds."""
    start = time.monotonic()
    behind = 0.0
    sent = 0
    total = len(ids)
    while sent < total:
        elapsed = time.monotonic() - start
        due = min(total, int(elapsed * rate) + 1)
        behind = max(behind, elapsed - sent / rate)
        while sent < due:
            await channel.basic_publish(
                BODY,
                routing_key=job.queue,
                properties=properties(f"{job.tag}-{ids[sent]}", sent_ns=time.monotonic_ns()),
            )
            probe.tick()
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return behind
