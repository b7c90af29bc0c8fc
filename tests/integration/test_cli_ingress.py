"""`fleet ingress run` as a real process: it serves, publishes, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import Broker
from tests.integration.conftest import order
from tests.integration.test_ingress import ENV, TOPOLOGY, depth
from topology import loads
from topology.apply import apply

ROOT = Path(__file__).resolve().parents[2]


def fleet(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_ingress_run_serves_until_sigterm(broker: Broker, tmp_path: Path) -> None:
    # Given
    asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
    path = tmp_path / "fleet.yaml"
    path.write_text(TOPOLOGY)
    port = free_port()
    env = dict(ENV)  # every route's secrets, as the in-process tests use them
    process = fleet(
        "ingress", "run", "--port", str(port), "--file", str(path), "--url", broker.amqp_url,
        env=env,
    )  # fmt: skip
    try:
        # When: it becomes ready
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, process.stderr
                time.sleep(0.05)
            response = http.post("/orders", json=order("o-1"))
        # Then
        assert response.status_code == 202
        assert asyncio.run(depth(broker.amqp_url)) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_a_route_with_an_unknown_contract_is_one_line(tmp_path: Path) -> None:
    # Given
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "exchanges: {orders: {}}\n"
        "ingress: {routes: {/x: {contract: NoSuchEvent, exchange: orders}}}\n"
    )
    # When
    process = fleet("ingress", "run", "--file", str(path))
    _, stderr = process.communicate(timeout=20)
    # Then
    assert process.returncode == 2
    assert stderr.count("\n") == 1
    assert stderr.startswith("error: ingress.routes./x.contract:")


def test_a_missing_secret_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(TOPOLOGY)
    process = fleet("ingress", "run", "--file", str(path), env={"INGRESS_TOKEN": "t"})
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "ingress.routes./hooks.auth: none of the environment variables" in stderr
