"""Metrics counting and exposition, trace-context copying, the ports `fleet up`
hands out, and `fleet status`'s table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from topology import TopologyInvalid, loads
from workers.cli.status import render
from workers.cli.up import metrics_ports
from workers.observability.context import copied
from workers.observability.exposition import FleetCollector
from workers.observability.metrics import Histogram, MetricsObserver, WorkerMetrics, age_seconds
from workers.status import Depth, QueueStatus, Snapshot
from workers.supervisor import worker_command


class TestHistogram:
    def test_buckets_are_cumulative_with_an_infinite_last_one(self) -> None:
        """Each value counts in its bucket and every bucket above it."""
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 3.0):
            histogram.observe(value)
        assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
        assert histogram.sum == pytest.approx(3.65)


class TestWorkerMetrics:
    def test_a_type_no_handler_takes_is_counted_as_unknown(self) -> None:
        """Label values come from the handlers, never from a message."""
        metrics = WorkerMetrics("w", "q", ["OrderPlaced"])
        metrics.dead_lettered("Anything-a-client-sent", "unknown-type")
        metrics.retried("OrderPlaced", 2)
        assert metrics.stats("unknown").dead_lettered == {"unknown-type": 1}
        assert metrics.stats("OrderPlaced").retried == {2: 1}
        assert metrics.stats("OrderPlaced").failed == 1
        assert set(metrics.types) == {"OrderPlaced", "unknown"}

    def test_the_collector_exposes_counters_histograms_and_queue_depths(self) -> None:
        """The text exposition names worker, queue and event type."""
        metrics = WorkerMetrics("inventory", "inventory", ["OrderPlaced"])
        metrics.stats("OrderPlaced").processed = 7
        metrics.stats("OrderPlaced").handler_seconds.observe(0.002)
        metrics.in_flight = lambda: 3
        collector = FleetCollector()
        collector.workers.append(metrics)
        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
        assert (
            'fleet_messages_processed_total{queue="inventory",type="OrderPlaced",'
            'worker="inventory"} 7.0'
        ) in text
        assert 'fleet_handler_duration_seconds_count{queue="inventory"' in text
        assert 'fleet_messages_in_flight{queue="inventory",worker="inventory"} 3.0' in text

    def test_rate_limit_waits_are_counted_per_type(self) -> None:
        """on_throttled adds to the held deliveries and the time they were held."""
        metrics = WorkerMetrics("payments", "payments", ["StockReserved"])
        observer = MetricsObserver(metrics)
        for seconds in (0.02, 0.03):
            observer.on_throttled(None, "StockReserved", seconds)  # type: ignore[arg-type]
        collector = FleetCollector()
        collector.workers.append(metrics)
        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
        labels = '{queue="payments",type="StockReserved",worker="payments"}'
        assert f"fleet_messages_throttled_total{labels} 2.0" in text
        assert f"fleet_messages_throttled_seconds_total{labels} 0.05" in text


class TestMessageAge:
    def test_the_millisecond_header_wins_over_the_timestamp_property(self) -> None:
        """The AMQP timestamp has whole seconds; fleet's header has milliseconds."""
        sent = datetime(2026, 1, 1, tzinfo=UTC)
        now = sent.timestamp() + 2.5
        assert age_seconds({"timestamp_in_ms": int(sent.timestamp() * 1000)}, None, now) == 2.5
        assert age_seconds({}, sent, now) == 2.5
        assert age_seconds({}, None, now) is None


class TestTraceContextCopy:
    def test_traceparent_and_tracestate_are_copied_as_they_came(self) -> None:
        """Tracing off: follow-ons carry the incoming context; bytes become text."""
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert copied({"traceparent": parent.encode(), "tracestate": "a=1"}) == {
            "traceparent": parent,
            "tracestate": "a=1",
        }
        assert copied({"version": 1}) is None


class TestPorts:
    def test_fleet_up_numbers_ports_up_from_the_base(self) -> None:
        """Process n serves base + n; a base of 0 turns every endpoint off."""
        assert metrics_ports(9100, 3) == [9100, 9101, 9102]
        assert metrics_ports(0, 2) == [0, 0]
        command = worker_command("orders", None, "amqp://x/", "json", 9101)
        assert command[-2:] == ["--metrics-port", "9101"]

    def test_the_topology_sets_the_default_port_and_refuses_a_bad_one(self) -> None:
        """`metrics.port` defaults to 9100; out of range is an error with its path."""
        assert loads("queues: {a: {}}").metrics.port == 9100
        assert loads("queues: {a: {}}\nmetrics: {port: 9300}").metrics.port == 9300
        with pytest.raises(TopologyInvalid, match=r"metrics\.port"):
            loads("queues: {a: {}}\nmetrics: {port: 70000}")


class TestStatusTable:
    def test_dead_letters_are_red_and_missing_queues_yellow(self) -> None:
        """Only the rows that need attention are coloured."""
        healthy = QueueStatus(
            Depth("a", ready=1), "work", [("5s", Depth("a.retry.5s"))], Depth("a.dead")
        )
        parked = QueueStatus(Depth("b"), "work", [], Depth("b.dead", ready=2))
        missing = QueueStatus(Depth("c", missing=True), "delay")
        shot = Snapshot([healthy, parked, missing])
        lines = dict(render(shot))
        [a] = [line for line in lines if line.startswith("a ")]
        [b] = [line for line in lines if line.startswith("b ")]
        [c] = [line for line in lines if line.startswith("c ")]
        assert (lines[a], lines[b], lines[c]) == (None, "red", "yellow")
        assert a.split()[-2:] == ["5s:0", "0"]
        assert not shot.healthy
        assert Snapshot([healthy]).healthy
