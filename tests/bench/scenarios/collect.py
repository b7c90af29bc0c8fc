"""Gathering one scenario's samples into Series, round by round."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from tests.bench import host
from tests.bench.bench import Bench
from tests.bench.broker import BROKER_ERRORS
from tests.bench.process import ChildFailed
from tests.bench.results import Series

T = TypeVar("T")
MIB = 1024 * 1024
#: What fails one measurement (and not the run).
FAILURES: tuple[type[BaseException], ...] = (ChildFailed, TimeoutError, *BROKER_ERRORS)


class Collector:
    """The Series of one scenario: a row per (scenario, contender), created on first use.

    Args:
        bench: for progress lines.
        unit: the rows' unit.
        higher_is_better: whether a larger value wins.
        baseline: the contender each row's ratio divides by.
    """

    def __init__(self, bench: Bench, *, unit: str, higher_is_better: bool, baseline: str):
        self.bench = bench
        self.unit = unit
        self.higher_is_better = higher_is_better
        self.baseline = baseline
        self._series: dict[tuple[str, str], Series] = {}
        #: Other load on the machine during the last successful `attempt`, in cores.
        self.last_others = 0.0

    @property
    def series(self) -> list[Series]:
        return list(self._series.values())

    def row(self, scenario: str, contender: str) -> Series:
        key = (scenario, contender)
        if key not in self._series:
            self._series[key] = Series(
                scenario, contender, self.unit, self.higher_is_better, self.baseline
            )
        return self._series[key]

    def add(
        self,
        scenario: str,
        contender: str,
        value: float,
        *,
        cpu: float | None = None,
        details: dict[str, Any] | None = None,
        others: float | None = None,
    ) -> None:
        """One round's sample; `others` defaults to the other load of the last `attempt`."""
        row = self.row(scenario, contender)
        row.samples.append(value)
        row.others.append(self.last_others if others is None else others)
        if cpu is not None:
            row.cpu.append(cpu)
        if details:
            row.details.append(details)

    async def attempt(self, scenario: str, contender: str, step: Awaitable[T]) -> T | None:
        """Await one measurement; a failure is recorded (and shown), not raised.

        A measurement during which the broker restarted (the bench's own
        connection dropped) counts as failed, whatever it reported.
        """
        before = host.snapshot()
        try:
            result = await step
            self.last_others = host.other_load(before, host.snapshot())
            if self.bench.queues.interrupted:
                raise ChildFailed("the broker restarted during the measurement")
            return result
        except FAILURES as exc:
            reason = str(exc) or type(exc).__name__
            if self.bench.queues.interrupted:
                reason = f"the broker restarted during the measurement ({reason})"
            self.row(scenario, contender).failures.append(reason)
            self.bench.progress(f"{scenario} · {contender}: FAILED {reason}")
            return None
