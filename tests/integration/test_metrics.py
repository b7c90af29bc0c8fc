"""A worker's Prometheus metrics agree with what happened to the messages.

A real `fleet worker run` process with injected failures; its /metrics is
scraped over HTTP and compared with the follow-ons that arrived and the
dead-letter queue's contents.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from topology import load
from topology.apply import apply
from workers.testing import WorkerProcess, collect, queue_depth

TOPOLOGY = """
exchanges:
  orders: {}
  inventory: {}
queues:
  work:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
    retry: {attempts: 1, delays: [200ms, 400ms]}
  answers:
    type: classic
    bind: [{exchange: inventory, routing_key: "#"}]
workers:
  flaky:
    module: tests.fixtures.observed_workers
    queue: work
    publish_to: inventory
metrics: {lag_interval: 1s}
"""

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int) -> Samples:
    """Every sample of the endpoint: name → {sorted labels: value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    """Sum the samples of `name` by one label."""
    summed: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, {}).items():
        summed[dict(labels)[label]] += value
    return dict(summed)


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll `check` until it holds; the caller's assertions then say what differs."""
    for _ in range(int(seconds / 0.2)):
        if await check():
            return
        await asyncio.sleep(0.2)


class TestWorkerMetrics:
    async def test_counters_agree_with_what_happened_to_every_message(
        self, broker: Broker, tmp_path: Path, pika_publisher: PikaPublisher
    ) -> None:
        """processed + dead-lettered = published, retries are counted per tier, and
        the lag gauges show the dead letters, all from the worker's own /metrics."""
        # Given a worker with one in-process attempt and two retry tiers
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        port = free_port()
        worker = WorkerProcess(
            "flaky",
            topology_file=path,
            url=broker.amqp_url,
            pythonpath=[ROOT],
            args=["--metrics-port", str(port), "--management-url", broker.management_url],
        )
        # When 14 messages are published: 5 fine, 3 failing once, 2 always failing,
        # 2 refused, one that does not decode and one of an unknown type
        kinds = ["ok"] * 5 + ["once"] * 3 + ["boom"] * 2 + ["reject"] * 2
        with worker:
            now_ms = int(time.time() * 1000)
            for i, kind in enumerate(kinds):
                pika_publisher.publish(
                    "orders",
                    "order.placed",
                    order(f"o-{i}", customer_id=kind),
                    message_id=f"m-{i}",
                    headers={"version": 1, "timestamp_in_ms": now_ms},
                )
            pika_publisher.publish("orders", "order.placed", b"{not json", message_id="bad")
            pika_publisher.publish(
                "orders", "order.placed", order("x"), type="Mystery", message_id="mystery"
            )
            published = len(kinds) + 2
            answers = await collect(broker.amqp_url, "answers", count=8)

            async def all_parked() -> bool:
                return await queue_depth(broker.amqp_url, "work.dead") == 6

            async def polled() -> bool:
                ready = by(scrape(port), "fleet_queue_messages_ready", "queue")
                return ready.get("work.dead") == 6

            await wait_for(all_parked)
            await wait_for(polled)
            dead = await queue_depth(broker.amqp_url, "work.dead")
            samples = scrape(port)

        # Then the counters say what the queues show
        assert len(answers) == 8
        assert dead == 6
        processed = total(samples, "fleet_messages_processed_total")
        dead_lettered = total(samples, "fleet_messages_dead_lettered_total")
        assert processed == len(answers)
        assert processed + dead_lettered == published
        assert by(samples, "fleet_messages_dead_lettered_total", "reason") == {
            "retries-exhausted": 2,
            "permanent": 2,
            "decode": 1,
            "unknown-type": 1,
        }
        assert by(samples, "fleet_messages_dead_lettered_total", "type") == {
            "OrderPlaced": 5,
            "unknown": 1,
        }
        assert by(samples, "fleet_messages_retried_total", "tier") == {"1": 5, "2": 2}
        assert total(samples, "fleet_messages_received_total") == published + 7
        assert total(samples, "fleet_messages_failed_total") == 7 + 6
        assert total(samples, "fleet_messages_duplicates_total") == 0
        # handler calls: 8 that succeeded, 3 first attempts, 2 x 3 tiers, 2 refusals
        assert total(samples, "fleet_handler_duration_seconds_count") == 19
        assert total(samples, "fleet_message_latency_seconds_count") == 8
        # confirms: 8 follow-ons, 7 retry copies, 6 dead letters
        assert total(samples, "fleet_publish_confirm_seconds_count") == 21
        assert total(samples, "fleet_messages_in_flight") == 0
        ready = by(samples, "fleet_queue_messages_ready", "queue")
        assert ready == {"work": 0, "work.retry.200ms": 0, "work.retry.400ms": 0, "work.dead": 6}
        assert by(samples, "fleet_queue_consumers", "queue")["work"] == 1
        assert by(samples, "fleet_queue_messages_ready", "kind") == {
            "work": 0,
            "retry": 0,
            "dead": 6,
        }
        assert "work.dead" in by(samples, "fleet_queue_messages_unacked", "queue")
        assert total(samples, "fleet_queue_polls_failed_total") == 0

    async def test_a_taken_port_leaves_the_worker_working(
        self, broker: Broker, tmp_path: Path, pika_publisher: PikaPublisher
    ) -> None:
        """A metrics port in use is a warning: the worker still consumes."""
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        with socket.socket() as taken:
            taken.bind(("0.0.0.0", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with WorkerProcess(
                "flaky",
                topology_file=path,
                url=broker.amqp_url,
                pythonpath=[ROOT],
                args=["--metrics-port", str(port)],
            ) as worker:
                pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="m-1")
                answers = await collect(broker.amqp_url, "answers", count=1)
        assert len(answers) == 1
        assert worker.events("metrics.unavailable")[0]["port"] == port


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scrapes go straight to the loopback endpoint."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


class TestLagPollFailures:
    async def test_a_vanished_queue_is_counted_as_failed_polls_and_reported_as_unknown(
        self, broker: Broker, tmp_path: Path, pika_publisher: PikaPublisher
    ) -> None:
        """Deleting the dead-letter queue under a running worker: its gauges go away,
        failed polls are counted, and the worker keeps processing."""
        # Given a worker polling every second
        path = tmp_path / "topology.yaml"
        path.write_text(TOPOLOGY)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        port = free_port()
        with WorkerProcess(
            "flaky",
            topology_file=path,
            url=broker.amqp_url,
            pythonpath=[ROOT],
            args=["--metrics-port", str(port), "--management-url", broker.management_url],
        ) as worker:

            async def polled() -> bool:
                return "work.dead" in by(scrape(port), "fleet_queue_messages_ready", "queue")

            await wait_for(polled)
            # When its dead-letter queue is deleted
            with broker.api() as api:
                api.delete(
                    f"/api/queues/{quote(broker.vhost, safe='')}/work.dead"
                ).raise_for_status()

            async def failing() -> bool:
                return total(scrape(port), "fleet_queue_polls_failed_total") >= 2

            await wait_for(failing)
            pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="m-1")
            answers = await collect(broker.amqp_url, "answers", count=1)
            samples = scrape(port)
        # Then
        assert total(samples, "fleet_queue_polls_failed_total") >= 2
        assert "work.dead" not in by(samples, "fleet_queue_messages_ready", "queue")
        assert len(answers) == 1
        assert len(worker.events("lag.poll_failed")) == 1  # logged once, counted always
