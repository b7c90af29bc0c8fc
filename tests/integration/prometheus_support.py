"""A real Prometheus scraping a real worker, for the tests of the monitoring stack.

`monitored(broker, tmp_path)` applies a one-worker topology, starts the worker
with its metrics on a free port and a Prometheus (Debian's /usr/bin/prometheus)
that scrapes it every second and evaluates the project's own
deploy/prometheus/alerts.yml, with FleetDeadLetters's `for:` shortened so a
test need not wait its minute. Both processes stop when the block ends.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Broker
from tests.integration.conftest import ROOT
from topology import load
from topology.apply import apply
from workers.testing import WorkerProcess

ALERTS = ROOT / "deploy/prometheus/alerts.yml"
#: The production rule's hold, and the one the tests load instead.
DEAD_LETTERS_FOR = "for: 1m"
SHORT_FOR = "for: 2s"

TOPOLOGY = """
exchanges:
  orders: {}
  inventory: {}
queues:
  work:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
    retry: {attempts: 1, delays: [200ms]}
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

CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: fleet-workers
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{service: flaky}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def shortened_alerts() -> str:
    """alerts.yml with FleetDeadLetters held 2 s instead of 1 min; fails if the rule moved."""
    text = ALERTS.read_text()
    head, marker, tail = text.partition("- alert: FleetDeadLetters")
    assert marker, "FleetDeadLetters is no longer in alerts.yml"
    rule, sep, rest = tail.partition("- alert:")
    assert DEAD_LETTERS_FOR in rule, f"FleetDeadLetters no longer says {DEAD_LETTERS_FOR!r}"
    return head + marker + rule.replace(DEAD_LETTERS_FOR, SHORT_FOR, 1) + sep + rest


@dataclass
class Prometheus:
    """A Prometheus process on the loopback; `api` reads its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        """The `data` of an /api/v1 answer (fails on anything but success)."""
        reply = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        reply.raise_for_status()
        body = reply.json()
        assert body["status"] == "success", body
        return body["data"]

    def firing(self, name: str) -> list[dict[str, Any]]:
        alerts = self.api("alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


@contextlib.contextmanager
def prometheus(directory: Path, config: str, alerts: str) -> Iterator[Prometheus]:
    """Start Prometheus with `config` (and `alerts.yml` beside it); stop it afterwards."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: `apt-get install prometheus` (.ci/setup installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prometheus.yml").write_text(config)
    (directory / "alerts.yml").write_text(alerts)
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Prometheus, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"prometheus did not get ready:\n{server.log.read_text()[-3000:]}")


@dataclass
class Monitored:
    """A worker and the Prometheus that scrapes it."""

    worker: WorkerProcess
    metrics_port: int
    prometheus: Prometheus
    topology_file: Path


@contextlib.asynccontextmanager
async def monitored(broker: Broker, tmp_path: Path) -> AsyncIterator[Monitored]:
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
    with (
        worker,
        prometheus(tmp_path / "prometheus", CONFIG.format(port=port), shortened_alerts()) as prom,
    ):
        yield Monitored(worker, port, prom, path)
