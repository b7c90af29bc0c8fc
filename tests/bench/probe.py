"""Counting and timing inside a contender process, kept off the hot path.

A handler calls `tick()` (one increment and two comparisons); the clock is
read only at the first delivery (or once the warm-up's messages are handled)
and when the expected count is reached. The resident set is read at those two
marks too, so a run shows whether the process grows in steady state.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

from tests.bench.protocol import Outcome

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _nothing() -> None:
    return None


class Probe:
    """Counts handled messages and times first delivery (or end of warm-up) → done.

    Args:
        expected: messages after which `on_done` is called (once).
        phases: latency phases (label → messages), in arrival order.
        warmup: messages handled before the clock starts (untimed).
    """

    __slots__ = (
        "count",
        "cpu_first",
        "expected",
        "first",
        "on_done",
        "phases",
        "rss_end_kb",
        "rss_warm_kb",
        "samples",
        "start_at",
        "warmup",
    )

    def __init__(self, expected: int, phases: dict[str, int] | None = None, warmup: int = 0):
        self.expected = expected
        self.warmup = warmup
        #: The count at which the clock starts: the warm-up's last message, or the first.
        self.start_at = max(warmup, 1)
        self.count = 0
        self.first = 0.0
        self.cpu_first = 0.0
        self.rss_warm_kb = 0
        self.rss_end_kb = 0
        self.on_done: Callable[[], None] = _nothing
        self.samples: list[int] = []
        #: Latency phases (label → messages), in arrival order; see `protocol.phases`.
        self.phases = phases or {"": expected}

    def tick(self) -> None:
        """One message handled."""
        count = self.count = self.count + 1
        if count == self.start_at:
            self.first = time.perf_counter()
            self.cpu_first = time.process_time()
            self.rss_warm_kb = rss_kb()
        if count == self.expected:
            self.rss_end_kb = rss_kb()
            self.on_done()

    def sent_at(self, sent_ns: int) -> None:
        """One message handled that its publisher stamped at `sent_ns` (monotonic)."""
        self.samples.append(time.monotonic_ns() - sent_ns)
        self.tick()

    def outcome(self, end: float, cpu_end: float, warmup: float = 0.0) -> Outcome:
        """What was measured, ending at `end` (perf_counter) and `cpu_end` (process_time)."""
        return Outcome(
            count=self.count,
            seconds=end - self.first if self.count else 0.0,
            cpu_seconds=cpu_end - self.cpu_first if self.count else 0.0,
            max_rss_kb=peak_rss_kb(),
            latency_ms=self._latencies(warmup) if self.samples else {},
            warmup=min(self.warmup, self.count),
            rss_warm_kb=self.rss_warm_kb,
            rss_end_kb=self.rss_end_kb,
        )

    def _latencies(self, warmup: float) -> dict[str, float]:
        """Percentiles per phase: messages arrive in the order they were sent."""
        found: dict[str, float] = {}
        start = 0
        for label, count in self.phases.items():
            for name, value in percentiles(self.samples[start : start + count], warmup).items():
                found[f"{label} {name}".strip()] = value
            start += count
        return found


def percentiles(samples_ns: list[int], warmup: float) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds, leaving out the first `warmup` share."""
    kept = sorted(samples_ns[int(len(samples_ns) * warmup) :])
    if not kept:
        return {}

    def at(q: float) -> float:
        return kept[min(len(kept) - 1, int(q * len(kept)))] / 1e6

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": kept[-1] / 1e6}


def peak_rss_kb() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int:
    """This process's resident set size now, in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident * PAGE_KB


def now() -> tuple[float, float]:
    """(perf_counter, process_time): the two clocks an Outcome is built from."""
    return time.perf_counter(), time.process_time()
