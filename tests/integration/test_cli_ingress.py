"""`fleet ingress run` as a real process: it serves, publishes, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Broker
from tests.integration.conftest import order
from tests.integration.test_ingress import ENV, TOPOLOGY, depth
from topology import loads
from topology.apply import apply
from workers.testing import eventually_blocking

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
            wait_ready(http, process)
            response = http.post("/orders", json=order("o-1"))
        # Then
        assert response.status_code == 202
        assert asyncio.run(depth(broker.amqp_url)) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_ingress_run_cuts_off_a_slow_client_by_the_topologys_limits(
    broker: Broker, tmp_path: Path
) -> None:
    """`ingress.limits` reach the real process (on uvloop): half a head, then silence,
    is answered 408 and closed, while /healthz is answered meanwhile."""
    # Given: the ingress with a one-second head timeout
    asyncio.run(apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url))
    path = tmp_path / "fleet.yaml"
    path.write_text(
        TOPOLOGY.replace("ingress:\n", "ingress:\n  limits: {head_timeout: 1s, idle_timeout: 1s}\n")
    )
    port = free_port()
    process = fleet(
        "ingress", "run", "--port", str(port), "--file", str(path), "--url", broker.amqp_url,
        env=dict(ENV),
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_ready(http, process)
            # When: a client sends half a head and stops
            # (a read timeout below the default head_timeout, 10 s: only the file's
            # limit can close this connection before the read gives up)
            with socket.create_connection(("127.0.0.1", port), timeout=6) as slow:
                slow.sendall(b"POST /orders HTTP/1.1\r\nHost: ingress\r\nContent-")
                health = http.get("/healthz")
                answer = read_until_closed(slow)
        # Then
        assert health.status_code == 200
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
        assert b"head_timeout" in answer
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def wait_ready(http: httpx.Client, process: subprocess.Popen[str]) -> None:
    """Until /readyz says the ingress is connected to the broker (20 s at most)."""

    def ready() -> bool:
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"the ingress exited {process.returncode}: {process.stderr.read()}")
        try:
            return http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    eventually_blocking(ready, what="the ingress ready (/readyz 200)", timeout=20, interval=0.05)


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (the socket's timeout bounds each read)."""
    received = b""
    while chunk := connection.recv(4096):
        received += chunk
    return received


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
