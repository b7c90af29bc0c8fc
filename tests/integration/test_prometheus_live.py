"""The monitoring stack with its real parts: a worker process, a Prometheus that
scrapes it, the project's own alert rules, and the console reading Prometheus.

Prometheus scrapes and evaluates every second. It loads a copy of
deploy/prometheus/alerts.yml in which FleetDeadLetters's `for: 1m` is replaced
by `for: 2s` (`prometheus_support.shortened_alerts` fails if the rule no longer
says `for: 1m`), so the firing alert takes seconds, not a minute; every other
part of the rule, its expression and labels, is the production one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher, order
from tests.integration.prometheus_support import (
    Monitored,
    free_port,
    monitored,
    shortened_alerts,
)
from topology import load
from workers.console.app import Settings, make_app
from workers.testing import eventually


@pytest.fixture
async def stack(broker: Broker, tmp_path: Path) -> AsyncIterator[Monitored]:
    async with monitored(broker, tmp_path) as running:
        yield running


def test_the_copy_of_the_rules_differs_only_in_the_hold() -> None:
    copy = shortened_alerts()
    assert copy.count("for: 2s") == 1
    assert "FleetDeadLetters" in copy
    assert "for: 1m" in copy  # FleetWorkerDown and FleetOutboxParked keep theirs


class TestPrometheusScrapesAWorker:
    async def test_the_target_is_up_and_its_queues_are_queried(self, stack: Monitored) -> None:
        """/api/v1/targets shows the worker up; a PromQL query returns its queue's figures."""
        prom = stack.prometheus

        def target_up() -> dict[str, object]:
            targets = prom.api("targets")["activeTargets"]
            assert [t["labels"]["job"] for t in targets] == ["fleet-workers"]
            assert targets[0]["health"] == "up", targets[0]
            return dict(targets[0])

        target = await eventually(target_up, what="the worker's target up", timeout=15)
        assert target["scrapeUrl"] == f"http://127.0.0.1:{stack.metrics_port}/metrics"

        def queues() -> dict[str, float]:
            result = prom.api("query", query="fleet_queue_messages_ready")["result"]
            found = {r["metric"]["queue"]: float(r["value"][1]) for r in result}
            assert {"work", "work.dead"} <= set(found), found
            return found

        ready = await eventually(queues, what="fleet_queue_messages_ready in Prometheus")
        assert ready["work"] == 0
        assert ready["work.dead"] == 0
        assert prom.firing("FleetDeadLetters") == []

    async def test_a_poison_message_fires_the_dead_letters_alert(
        self, stack: Monitored, pika_publisher: PikaPublisher
    ) -> None:
        """A body the contract cannot decode is parked; the alert fires for work.dead."""
        prom = stack.prometheus
        await eventually(
            lambda: prom.api("query", query='fleet_queue_messages_ready{kind="dead"}')["result"],
            what="the dead-letter gauge scraped",
        )
        assert prom.firing("FleetDeadLetters") == []

        pika_publisher.publish("orders", "order.placed", b"{not json", message_id="poison")

        def fired() -> list[dict[str, object]]:
            return prom.firing("FleetDeadLetters")

        alerts = await eventually(fired, what="FleetDeadLetters firing", timeout=20)
        assert len(alerts) == 1
        labels, annotations = alerts[0]["labels"], alerts[0]["annotations"]
        assert labels == {"alertname": "FleetDeadLetters", "queue": "work.dead",
                          "severity": "warning"}  # fmt: skip
        assert annotations == {
            "summary": "work.dead holds 1 dead letter(s)",
            "description": "Inspect with `fleet dlq show work.dead`, replay with "
            "`fleet dlq replay`.",
        }


class TestTheConsoleReadsPrometheus:
    async def test_the_overview_shows_prometheus_figures_and_the_firing_alert(
        self, stack: Monitored, broker: Broker, pika_publisher: PikaPublisher, tmp_path: Path
    ) -> None:
        """`fleet console --prometheus-url`: the overview's Prometheus section has the
        work queue's dead letters and processed rate, and FleetDeadLetters firing."""
        prom = stack.prometheus
        settings = Settings(
            topology=load(stack.topology_file), topology_file=str(stack.topology_file),
            amqp_url=broker.amqp_url, management_url=broker.management_url,
            audit_file=tmp_path / "audit.jsonl", prometheus_url=prom.url,
        )  # fmt: skip
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(settings), host="127.0.0.1"))
        await client.start_server()
        try:
            # The counter scraped at 0 first, so rate() sees the message's increase.
            await eventually(
                lambda: prom.api("query", query="fleet_messages_processed_total")["result"],
                what="the processed counter scraped",
            )
            pika_publisher.publish("orders", "order.placed", order("o-1", customer_id="ok"))
            pika_publisher.publish("orders", "order.placed", b"{not json", message_id="poison")

            async def overview() -> tuple[str, ...]:
                reply = await client.get("/", headers={"Accept": "text/html"})
                text = await reply.text()
                assert reply.status == 200, text
                section = text[text.index('id="prometheus"') :]
                assert 'id="prometheus-note"' not in section
                assert "<b>FleetDeadLetters</b> (warning): work.dead holds 1 dead letter(s)" in (
                    section
                )
                row = re.search(r"<tr><td>work</td><td class=n>(.*?)</td><td class=n>(.*?)</td>"
                                r"<td class=n>(.*?)</td></tr>", section)  # fmt: skip
                assert row, section
                assert float(row[3]) > 0, row[0]  # one message processed within the last minute
                return row.groups()

            ready, dead, _ = await eventually(
                overview, what="the figures and the alert on the overview", timeout=20
            )
            table = await (await client.get("/overview/table")).text()
        finally:
            await client.close()

        assert ready == "0"
        assert dead == '<span class="red">1</span>'
        assert 'data-alert="FleetDeadLetters"' in table  # the live refresh carries it too

    async def test_fleet_console_takes_the_url_from_the_environment(
        self, broker: Broker, echo_topology: Callable[..., Any]
    ) -> None:
        """`fleet console` with FLEET_PROMETHEUS_URL on a port nobody listens on: the
        overview answers 200 with the broker's table and the note, not an error page."""
        path, _ = await echo_topology()
        port, nobody = free_port(), free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "console", "--port", str(port),
            "--file", str(path), "--url", broker.amqp_url,
            "--management-url", broker.management_url,
            env={**os.environ, "FLEET_PROMETHEUS_URL": f"http://127.0.0.1:{nobody}"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:

            async def overview() -> str:
                try:
                    async with aiohttp.ClientSession() as session:
                        reply = await session.get(f"http://127.0.0.1:{port}/overview/table")
                        text = await reply.text()
                except aiohttp.ClientError:
                    return ""
                assert reply.status == 200, text
                return text

            text = await eventually(overview, what="the console's overview", timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
        assert "<td>echo</td>" in text  # the broker's table is still there
        assert 'id="prometheus-note"' in text
        assert f"Prometheus at http://127.0.0.1:{nobody} did not answer" in text
