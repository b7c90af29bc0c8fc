"""A worker's counters and histograms, kept as plain integers on the hot path.

prometheus-client's own Counter and Histogram take a lock per update (about
1 µs each here); a worker doing 20k msg/s would spend a tenth of its time on
them. fleet counts in slotted objects bound once per (worker, queue, event
type) and turns them into Prometheus samples only when scraped
(`exposition.FleetCollector`). Every label value comes from the topology or
the worker's handlers, never from a message, so label sets stay bounded.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from workers.runtime import headers as h
from workers.runtime.circuit import Circuit
from workers.runtime.delivery import Delivery
from workers.runtime.hooks import DeliveryObserver
from workers.runtime.retry import Park, Redeliver

#: Seconds; handler calls of a few ms to external calls of tens of seconds.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Seconds from publish to processed: milliseconds when flowing, minutes when
#: a message waited in a retry tier or a backlog.
LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
)  # fmt: skip
#: The event-type label of a message no handler of the worker takes.
UNKNOWN_TYPE = "unknown"


class Histogram:
    """Bucket counts and a sum; `observe` is one bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``[("0.001", n), …, ("+Inf", total)]`` as Prometheus buckets count."""
        running = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), list(self.counts), strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


class TypeStats:
    """What one worker did with one event type on its queue."""

    __slots__ = (
        "dead_lettered",
        "duplicates",
        "failed",
        "handler_seconds",
        "latency_seconds",
        "processed",
        "received",
        "retried",
        "throttled",
        "throttled_seconds",
    )

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.failed = 0  # deliveries that ended in a retry tier or the dead-letter queue
        self.duplicates = 0
        self.throttled = 0  # deliveries a rate limit held before their handler
        self.throttled_seconds = 0.0
        self.retried: dict[int, int] = {}  # tier → count
        self.dead_lettered: dict[str, int] = {}  # reason class → count
        self.handler_seconds = Histogram(DURATION_BUCKETS)
        self.latency_seconds = Histogram(LATENCY_BUCKETS)


class QueueDepth:
    """One queue's last polled figures (`lag.LagPoller`); None until known."""

    __slots__ = ("consumers", "kind", "ready", "unacked")

    def __init__(self, kind: str):
        self.kind = kind  # work | retry | dead
        self.ready: int | None = None
        self.unacked: int | None = None
        self.consumers: int | None = None


class WorkerMetrics:
    """Everything one worker process counts about its queue.

    Args:
        worker: the worker's name.
        queue: the queue it consumes.
        event_types: the wire names its handlers take (the event-type labels).
    """

    def __init__(self, worker: str, queue: str, event_types: Iterable[str]):
        self.worker = worker
        self.queue = queue
        self.types: dict[str, TypeStats] = {name: TypeStats() for name in event_types}
        self.types.setdefault(UNKNOWN_TYPE, TypeStats())
        self.confirm_seconds = Histogram(DURATION_BUCKETS)
        self.queues: dict[str, QueueDepth] = {}
        self.lag_polls_failed = 0
        #: Stream workers: offsets lost to retention (by stream), and the last offset
        #: processed (by stream).
        self.stream_offsets_lost: dict[str, int] = {}
        self.stream_offsets: dict[str, int] = {}
        #: Deliveries received and not yet settled, read at scrape time.
        self.in_flight: Callable[[], int] = lambda: 0
        #: The circuit breaker's state (`breaker` in the topology); None without one.
        self.breaker: Circuit | None = None

    def stats(self, type_name: str | None) -> TypeStats:
        """The stats of an event type, `unknown` for one no handler takes."""
        return self.types.get(type_name or UNKNOWN_TYPE) or self.types[UNKNOWN_TYPE]

    def retried(self, type_name: str | None, tier: int) -> None:
        """A delivery went to retry tier `tier` (1 is the first delay)."""
        stats = self.stats(type_name)
        stats.failed += 1
        stats.retried[tier] = stats.retried.get(tier, 0) + 1

    def dead_lettered(self, type_name: str | None, reason: str) -> None:
        """A delivery was parked; `reason` is the reason class (decode, permanent, …)."""
        stats = self.stats(type_name)
        stats.failed += 1
        stats.dead_lettered[reason] = stats.dead_lettered.get(reason, 0) + 1


def age_seconds(headers: dict[str, Any], timestamp: datetime | None, now: float) -> float | None:
    """Seconds since the message was published, from the `timestamp_in_ms` header
    fleet writes, else the AMQP `timestamp` property (whole seconds); None without either."""
    sent_ms = headers.get(h.TIMESTAMP_MS)
    if type(sent_ms) is int:
        return max(0.0, now - sent_ms / 1000)
    if timestamp is not None:
        return max(0.0, now - timestamp.timestamp())
    return None


class MetricsObserver(DeliveryObserver):
    """Counts a worker's deliveries into `metrics` through the message path's hooks."""

    def __init__(self, metrics: WorkerMetrics):
        self.metrics = metrics

    def on_received(self, delivery: Delivery, label: str | None) -> None:
        self.metrics.stats(label).received += 1

    def on_duplicate(self, delivery: Delivery, label: str | None) -> None:
        self.metrics.stats(label).duplicates += 1

    def on_throttled(self, delivery: Delivery, label: str | None, seconds: float) -> None:
        stats = self.metrics.stats(label)
        stats.throttled += 1
        stats.throttled_seconds += seconds

    def on_handled(self, delivery: Delivery, label: str | None, seconds: float, ok: bool) -> None:
        self.metrics.stats(label).handler_seconds.observe(seconds)

    def on_processed(self, delivery: Delivery, label: str | None) -> None:
        stats = self.metrics.stats(label)
        stats.processed += 1
        timestamp = delivery.message.header.properties.timestamp
        age = age_seconds(
            delivery.headers, timestamp if isinstance(timestamp, datetime) else None, time.time()
        )
        if age is not None:
            stats.latency_seconds.observe(age)

    def on_retried(
        self, delivery: Delivery, label: str | None, decision: Redeliver, attempts: int
    ) -> None:
        self.metrics.retried(label, decision.tier)

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        self.metrics.dead_lettered(label, decision.reason)
