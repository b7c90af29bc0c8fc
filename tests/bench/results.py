"""What a run produces: one Series per table row, the scenarios skipped, the targets.

A Series holds one sample per round; the table shows its median, min and max
and the ratio of its median to its baseline's median in the same scenario.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Series:
    """One contender in one scenario, over every round.

    Attributes:
        scenario: the table's first column (``drain``, ``latency 1000/s p99``, ...).
        contender: the second (``fleet``, ``aio-pika``, ``aio-pika+uvloop``, ...).
        unit: ``msg/s``, ``ms`` or ``MB``.
        higher_is_better: throughput yes; latency and memory no.
        baseline: the contender the ratio divides by.
        samples: one value per round that succeeded.
        cpu: the contender's CPU use per round, in cores (1.0 = one core busy).
        failures: why a round produced no sample.
        others: other load on the machine per round, in cores (see `host`).
        details: per-round extras kept for the JSON (counters, the publisher's lag).
    """

    scenario: str
    contender: str
    unit: str
    higher_is_better: bool
    baseline: str
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.samples) if self.samples else None

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu) if self.cpu else None

    @property
    def others_median(self) -> float | None:
        return statistics.median(self.others) if self.others else None


class Skip(Exception):
    """Raised by a scenario that cannot run here; the message says why."""


@dataclass(frozen=True)
class Skipped:
    """A scenario that did not run, and why."""

    scenario: str
    reason: str


def ratio(series: Series, everything: list[Series]) -> float | None:
    """`series`'s median over its baseline's median in the same scenario."""
    base = find(everything, series.scenario, series.baseline)
    if base is None or base.median in (None, 0) or series.median is None:
        return None
    return series.median / base.median


def find(everything: list[Series], scenario: str, contender: str) -> Series | None:
    return next(
        (s for s in everything if s.scenario == scenario and s.contender == contender), None
    )


@dataclass(frozen=True)
class Target:
    """One of the issues' targets: `contender` / `against` in `scenario`, compared to `bound`."""

    scenario: str
    contender: str
    against: str
    op: Literal[">=", "<="]
    bound: float

    def __str__(self) -> str:
        return f"{self.scenario}: {self.contender} {self.op} {self.bound}x {self.against}"

    def measure(self, everything: list[Series]) -> tuple[float | None, bool | None]:
        """(measured ratio, met) — (None, None) when either side has no result."""
        mine = find(everything, self.scenario, self.contender)
        theirs = find(everything, self.scenario, self.against)
        if mine is None or theirs is None or mine.median is None or not theirs.median:
            return None, None
        value = mine.median / theirs.median
        met = value >= self.bound if self.op == ">=" else value <= self.bound
        return value, met


#: The issues' targets, as ratios from the same run (issue 6's first).
TARGETS = (
    Target("drain", "fleet", "aio-pika", ">=", 1.8),
    Target("drain", "fleet", "faststream", ">=", 3.0),
    Target("saga step", "fleet", "aio-pika", ">=", 1.3),
    Target("saga step", "fleet", "faststream", ">=", 2.0),
    Target("latency 1000/s p99", "fleet", "aio-pika", "<=", 1.2),
    Target("rss under load", "fleet", "aio-pika", "<=", 1.5),
    Target("inbox drain", "fleet inbox on", "fleet inbox off", ">=", 0.5),
    Target("inbox drain", "fleet inbox on, grouped", "fleet inbox off", ">=", 0.5),
    # Issue 17's: the outbox's cost to the producer, its relay's rate.
    Target("outbox producer", "with outbox", "without outbox", ">=", 0.7),
    Target("outbox relay", "fleet outbox relay", "fleet direct", ">=", 0.8),
    # Issue 18's: a stream worker against bare rstream on the same events.
    Target("stream drain", "fleet stream", "rstream", ">=", 0.8),
    # Issue 21's, in steady state (100,000 messages a measurement): the saga
    # step, memory at the end of a drain and a saga step, and the share of the
    # C client's ceiling on a classic and a quorum queue.
    Target("saga step", "fleet", "aio-pika", ">=", 2.2),
    Target("drain rss at end", "fleet", "aio-pika", "<=", 1.5),
    Target("saga step rss at end", "fleet", "aio-pika", "<=", 1.5),
    Target("drain", "fleet", "C client", ">=", 0.9),
    Target("drain, quorum queue", "fleet", "C client", ">=", 0.55),
)


#: Whose share of the C client's ceiling the report gives: (scenario, contender).
CEILING = "C client"
CEILING_SHARES = (
    ("drain", "fleet"),
    ("drain", "fleet worker run"),
    ("drain, quorum queue", "fleet"),
)


def ceiling_shares(everything: list[Series]) -> list[tuple[str, str, float | None]]:
    """(scenario, contender, median ÷ the C client's median in that scenario); None
    when either side has no result (the C client was left out, say)."""
    shares = []
    for scenario, contender in CEILING_SHARES:
        mine = find(everything, scenario, contender)
        ceiling = find(everything, scenario, CEILING)
        if mine is None and ceiling is None:
            continue
        share = None
        if mine is not None and ceiling is not None and mine.median and ceiling.median:
            share = mine.median / ceiling.median
        shares.append((scenario, contender, share))
    return shares
