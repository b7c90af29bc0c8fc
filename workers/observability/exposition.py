"""Prometheus exposition: the process's WorkerMetrics as samples, served over HTTP.

One collector per process, registered once in prometheus-client's default
registry (which adds the process_* and python_* metrics); each WorkerMetrics
joins it while its worker runs. Several `fleet worker run` processes on one
machine each serve their own port (`fleet up` gives replica i the base port
plus i), so no multiprocess mode is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import structlog
from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from workers.observability.metrics import WorkerMetrics
from workers.runtime.circuit import STATE_VALUES

log = structlog.get_logger("fleet.metrics")

WQT = ["worker", "queue", "type"]


class FleetCollector(Collector):
    """Turns every joined WorkerMetrics into samples at scrape time."""

    def __init__(self) -> None:
        self.workers: list[WorkerMetrics] = []

    def collect(self) -> Iterator[Metric]:
        received = _counter("messages_received", "Deliveries received.")
        processed = _counter("messages_processed", "Deliveries handled and acked.")
        failed = _counter(
            "messages_failed", "Deliveries that went to a retry tier or the dead-letter queue."
        )
        duplicates = _counter(
            "messages_duplicates", "Deliveries skipped: already processed (inbox)."
        )
        throttled = _counter(
            "messages_throttled", "Deliveries a rate limit held before their handler ran."
        )
        throttled_seconds = _counter(
            "messages_throttled_seconds", "Time deliveries were held by a rate limit."
        )
        retried = CounterMetricFamily(
            "fleet_messages_retried",
            "Deliveries sent to a broker-delayed retry tier (1 = the first delay).",
            labels=[*WQT, "tier"],
        )
        dead = CounterMetricFamily(
            "fleet_messages_dead_lettered",
            "Deliveries parked in <queue>.dead, by reason class.",
            labels=[*WQT, "reason"],
        )
        handler = HistogramMetricFamily(
            "fleet_handler_duration_seconds",
            "Handler time per delivery, in-process retries included.",
            labels=WQT,
        )
        latency = HistogramMetricFamily(
            "fleet_message_latency_seconds",
            "From the message's publish timestamp to processed (end to end).",
            labels=WQT,
        )
        confirm = HistogramMetricFamily(
            "fleet_publish_confirm_seconds",
            "From publish to the broker's confirm (follow-ons, retries, dead letters).",
            labels=["worker"],
        )
        in_flight = GaugeMetricFamily(
            "fleet_messages_in_flight",
            "Deliveries received and not yet settled.",
            labels=["worker", "queue"],
        )
        ready = _gauge("queue_messages_ready", "Messages ready in the queue (passive declare).")
        unacked = _gauge(
            "queue_messages_unacked", "Messages delivered, not yet acked (management API)."
        )
        consumers = _gauge("queue_consumers", "Consumers of the queue.")
        polls_failed = CounterMetricFamily(
            "fleet_queue_polls_failed",
            "Queue depth polls that failed (the queue figures are then stale).",
            labels=["worker", "queue"],
        )
        breaker_state = GaugeMetricFamily(
            "fleet_breaker_state",
            "The circuit breaker: 0 closed (consuming), 1 half-open (probing), 2 open.",
            labels=["worker", "queue"],
        )
        breaker_opened = CounterMetricFamily(
            "fleet_breaker_opened",
            "Times the circuit breaker opened (stopped consuming).",
            labels=["worker", "queue"],
        )
        for metrics in list(self.workers):
            w, q = metrics.worker, metrics.queue
            if metrics.breaker is not None:
                breaker_state.add_metric([w, q], STATE_VALUES[metrics.breaker.state])
                breaker_opened.add_metric([w, q], metrics.breaker.opened)
        lost = CounterMetricFamily(
            "fleet_stream_offsets_lost",
            "Stream offsets a consumer never read: retention removed them before it resumed.",
            labels=["worker", "stream"],
        )
        position = GaugeMetricFamily(
            "fleet_stream_offset",
            "The last stream offset the worker processed (or parked).",
            labels=["worker", "stream"],
        )
        for metrics in list(self.workers):
            w, q = metrics.worker, metrics.queue
            for stream, count in list(metrics.stream_offsets_lost.items()):
                lost.add_metric([w, stream], count)
            for stream, offset in list(metrics.stream_offsets.items()):
                position.add_metric([w, stream], offset)
            for name, stats in list(metrics.types.items()):
                labels = [w, q, name]
                received.add_metric(labels, stats.received)
                processed.add_metric(labels, stats.processed)
                failed.add_metric(labels, stats.failed)
                duplicates.add_metric(labels, stats.duplicates)
                throttled.add_metric(labels, stats.throttled)
                throttled_seconds.add_metric(labels, stats.throttled_seconds)
                for tier, count in sorted(stats.retried.items()):
                    retried.add_metric([*labels, str(tier)], count)
                for reason, count in sorted(stats.dead_lettered.items()):
                    dead.add_metric([*labels, reason], count)
                handler.add_metric(
                    labels, stats.handler_seconds.cumulative(), stats.handler_seconds.sum
                )
                latency.add_metric(
                    labels, stats.latency_seconds.cumulative(), stats.latency_seconds.sum
                )
            confirms = metrics.confirm_seconds
            confirm.add_metric([w], confirms.cumulative(), confirms.sum)
            in_flight.add_metric([w, q], metrics.in_flight())
            polls_failed.add_metric([w, q], metrics.lag_polls_failed)
            for queue, depth in list(metrics.queues.items()):
                labels = [w, queue, depth.kind]
                for family, value in (
                    (ready, depth.ready),
                    (unacked, depth.unacked),
                    (consumers, depth.consumers),
                ):
                    if value is not None:
                        family.add_metric(labels, value)
        yield from (received, processed, failed, duplicates, throttled, throttled_seconds)
        yield from (retried, dead)
        yield from (handler, latency, confirm, in_flight, ready, unacked, consumers, polls_failed)
        yield from (breaker_state, breaker_opened, lost, position)


def _counter(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(f"fleet_{name}", documentation, labels=WQT)


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    # `kind` is work, retry or dead: alert on dead letters with {kind="dead"} > 0.
    return GaugeMetricFamily(f"fleet_{name}", documentation, labels=["worker", "queue", "kind"])


_collector: FleetCollector | None = None
_lock = threading.Lock()
_served: set[int] = set()


def collector() -> FleetCollector:
    """The process's collector, registered in the default registry on first use."""
    global _collector
    with _lock:
        if _collector is None:
            _collector = FleetCollector()
            REGISTRY.register(_collector)
        return _collector


def join(metrics: WorkerMetrics) -> None:
    """Expose `metrics` until `leave`."""
    collector().workers.append(metrics)


def leave(metrics: WorkerMetrics) -> None:
    """Stop exposing `metrics`."""
    workers = collector().workers
    if metrics in workers:
        workers.remove(metrics)


def serve(port: int, host: str = "0.0.0.0") -> bool:
    """Serve /metrics on `port` (once per process); False, with a warning, if it is taken.

    A worker without its metrics endpoint still does its work: a port clash
    must not stop message processing.
    """
    with _lock:
        if port in _served:
            return True
        try:
            start_http_server(port, addr=host)
        except OSError as error:
            log.warning("metrics.unavailable", port=port, error=str(error))
            return False
        _served.add(port)
    log.info("metrics.serving", port=port, path="/metrics")
    return True
