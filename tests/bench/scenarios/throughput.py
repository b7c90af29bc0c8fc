"""Rounds of drains: the shape of the drain, saga-step and inbox scenarios.

Each round runs every entrant once, in the same order (A B C A B C ...), each
on a freshly pre-filled queue. The sample is the consumer's own rate: messages
over first delivery (or the end of the job's warm-up) → last ack. With
`rss_row`, the peak resident set of each drain (psutil, sampled) becomes a row
of its own; with `steady`, so do the resident set each contender reports at
its last message (`<scenario> rss at end`) and its growth from the end of the
warm-up to then, per 10,000 messages (`<scenario> rss growth`: no ratio, a
baseline near zero makes one meaningless).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from tests.bench.bench import Bench, Drained
from tests.bench.lineup import Entrant
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Series
from tests.bench.scenarios.collect import MIB, Collector

GROWTH_UNIT = "KiB/10k"
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
    rss_row: str | None = None,
    steady: bool = False,
    rounds: int | None = None,
) -> list[Series]:
    """Every entrant drains a pre-filled queue once per round (`rounds`, default the
    run's); returns msg/s rows (and MiB rows named `rss_row`, and with `steady`
    the end-of-run RSS and its growth)."""
    collector = Collector(bench, unit="msg/s", higher_is_better=True, baseline=baseline)
    memory = Collector(bench, unit="MiB", higher_is_better=False, baseline=baseline)
    growth = Collector(bench, unit=GROWTH_UNIT, higher_is_better=False, baseline="")
    rounds = rounds or bench.config.rounds
    for number in range(1, rounds + 1):
        for entrant in entrants:
            job = make_job(entrant, bench.tag())
            bench.progress(f"{scenario} · round {number}/{rounds} · {entrant.label} …")
            drained = await collector.attempt(
                scenario, entrant.label, _drain_and_check(bench, job, check)
            )
            if drained is None:
                continue
            outcome = drained.outcome
            cpu = outcome.cpu_seconds / outcome.seconds if outcome.seconds else None
            collector.add(scenario, entrant.label, outcome.rate, cpu=cpu, details=outcome.extra)
            if rss_row is not None:
                own_peak = {"getrusage_peak_mib": outcome.max_rss_kb / 1024}
                memory.add(
                    rss_row,
                    entrant.label,
                    drained.rss_peak / MIB,
                    details=own_peak,
                    others=collector.last_others,
                )
            memory_line = f"peak RSS {drained.rss_peak / MIB:.1f} MiB"
            if steady and outcome.rss_end_kb:
                memory.add(
                    f"{scenario} rss at end",
                    entrant.label,
                    outcome.rss_end_kb / 1024,
                    others=collector.last_others,
                )
                memory_line += f", at end {outcome.rss_end_kb / 1024:.1f} MiB"
            grown = outcome.rss_growth_kb
            if steady and grown is not None:
                growth.add(
                    f"{scenario} rss growth", entrant.label, grown, others=collector.last_others
                )
                memory_line += f", {grown:+,.0f} KiB per 10k messages"
            bench.progress(
                f"{scenario} · round {number}/{rounds} · {entrant.label}: "
                f"{outcome.rate:,.0f} msg/s, {cpu or 0:.0%} CPU, {memory_line}"
            )
    return collector.series + memory.series + growth.series


async def _drain_and_check(bench: Bench, job: Job, check: Check | None) -> Drained:
    drained = await bench.drain(job)
    if check is not None:
        await check(job, drained.outcome)
    return drained
