"""Rounds of drains: the shape of the drain, saga-step and inbox scenarios.

Each round runs every entrant once, in the same order (A B C A B C ...), each
on a freshly pre-filled queue. The sample is the consumer's own rate: messages
over first delivery → last ack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from tests.bench.bench import Bench
from tests.bench.lineup import Entrant
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector

MakeJob = Callable[[Entrant, str], Job]  # (entrant, message tag) → job
Check = Callable[[Job, Outcome], Awaitable[None]]  # raises ChildFailed when wrong


async def drain_rounds(
    bench: Bench,
    scenario: str,
    entrants: Sequence[Entrant],
    make_job: MakeJob,
    *,
    baseline: str,
    check: Check | None = None,
) -> list[Series]:
    """Every entrant drains a pre-filled queue once per round; returns msg/s rows."""
    collector = Collector(bench, unit="msg/s", higher_is_better=True, baseline=baseline)
    rounds = bench.config.rounds
    for number in range(1, rounds + 1):
        for entrant in entrants:
            job = make_job(entrant, bench.tag())
            bench.progress(f"{scenario} · round {number}/{rounds} · {entrant.label} …")
            outcome = await collector.attempt(
                scenario, entrant.label, _drain_and_check(bench, job, check)
            )
            if outcome is None:
                continue
            cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
            collector.add(scenario, entrant.label, outcome.rate, cpu=cpu, details=outcome.extra)
            bench.progress(
                f"{scenario} · round {number}/{rounds} · {entrant.label}: "
                f"{outcome.rate:,.0f} msg/s, {cpu or 0:.0%} CPU"
            )
    return collector.series


async def _drain_and_check(bench: Bench, job: Job, check: Check | None) -> Outcome:
    outcome = await bench.drain(job)
    if check is not None:
        await check(job, outcome)
    return outcome
