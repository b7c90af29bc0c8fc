"""The paced publisher of the latency scenario: fixed offered loads, in its own process.

For each rate of the job in turn (a phase of `job.seconds`), message i is due
at start + i / rate; every wake-up writes whatever is due, each message stamped
with `time.monotonic_ns()` in the `x-bench-sent-ns` header as it is built
(CLOCK_MONOTONIC is one clock for every process on the machine). Phases are
separated by a short pause, so one phase's backlog cannot delay the next.
Messages are spliced frames (see `frames`) on a channel without confirms, so
the publisher costs a few µs per message and leaves the CPU to the consumer
and the broker; the queue is durable and the messages persistent as everywhere.
"""

from __future__ import annotations

import asyncio
import time

import aiormq
from aiormq.abc import AbstractConnection

from tests.bench.child import Signals, run_loop
from tests.bench.frames import Template, write
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome, phases

PAUSE = 0.25  # seconds between phases


def run(job: Job, signals: Signals) -> Outcome:
    signals.ready()
    return run_loop("uvloop", _pace(job))


async def _pace(job: Job) -> Outcome:
    connection = await aiormq.connect(job.url)
    probe = Probe(job.expected)
    extra: dict[str, float] = {}
    try:
        channel = await connection.channel(publisher_confirms=False)
        template = Template(channel.number, job.queue, job.tag, stamped=True)
        sent = 0
        plan = phases(job.rates, job.seconds)
        for (label, count), rate in zip(plan.items(), job.rates, strict=True):
            ids = range(sent, sent + count)
            behind = await _phase(connection, template, rate, ids, probe)
            extra[f"{label} behind_max_ms"] = behind * 1000
            sent += count
            if sent < job.expected:
                await asyncio.sleep(PAUSE)
        end = now()
    finally:
        await connection.close()
    outcome = probe.outcome(*end)
    outcome.extra = extra
    return outcome


async def _phase(
    connection: AbstractConnection, template: Template, rate: int, ids: range, probe: Probe
) -> float:
    """Publish message ids `ids` at `rate`; returns the furthest it fell behind, seconds."""
    start = time.monotonic()
    behind = 0.0
    sent = 0
    total = len(ids)
    while sent < total:
        elapsed = time.monotonic() - start
        due = min(total, int(elapsed * rate) + 1)
        behind = max(behind, elapsed - sent / rate)
        batch = []
        while sent < due:
            batch.append(template.message(ids[sent], sent_ns=time.monotonic_ns()))
            probe.tick()
            sent += 1
        if batch:
            await write(connection, b"".join(batch))
        await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return behind
