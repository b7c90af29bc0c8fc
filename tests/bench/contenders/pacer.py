"""The paced publisher of the latency scenario: a fixed offered load, in its own process.

Message i is due at start + i / rate; every wake-up publishes whatever is due,
each stamped with `time.monotonic_ns()` in the `x-bench-sent-ns` header just
before it is written (CLOCK_MONOTONIC is one clock for every process on the
machine). It publishes on a plain aiormq channel without confirms, so its own
cost stays small on a 2-core machine; the queue is durable and the messages
persistent as everywhere else.
"""

from __future__ import annotations

import asyncio
import time

import aiormq

from tests.bench.child import Signals, run_loop
from tests.bench.payload import BODY, properties
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome


def run(job: Job, signals: Signals) -> Outcome:
    signals.ready()
    return run_loop("uvloop", _pace(job))


async def _pace(job: Job) -> Outcome:
    connection = await aiormq.connect(job.url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        probe = Probe(job.expected)
        start = time.monotonic()
        behind = 0.0  # the furthest the publisher fell behind its schedule, seconds
        sent = 0
        while sent < job.expected:
            elapsed = time.monotonic() - start
            due = min(job.expected, int(elapsed * job.rate) + 1)
            behind = max(behind, elapsed - sent / job.rate)
            while sent < due:
                await channel.basic_publish(
                    BODY,
                    routing_key=job.queue,
                    properties=properties(f"{job.tag}-{sent}", sent_ns=time.monotonic_ns()),
                )
                probe.tick()
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / job.rate - time.monotonic()))
        end = now()
    finally:
        await connection.close()
    outcome = probe.outcome(*end)
    outcome.extra = {"behind_max_ms": behind * 1000}
    return outcome
