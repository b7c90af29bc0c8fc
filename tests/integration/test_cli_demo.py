"""`fleet up` in the reference fleet and `fleet demo`, as a newcomer runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from fulfilment import TOPOLOGY_FILE

from tests.conftest import Broker
from workers.standard_webhooks import new_secret

ROOT = Path(__file__).resolve().parents[2]
#: inventory and payments run two replicas each in the reference topology.
WORKER_PROCESSES = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_ports(count: int) -> int:
    """A base port with `count` free ports from it on (for `fleet up --metrics-port`)."""
    for _ in range(50):
        base = free_port()
        probes = [socket.socket() for _ in range(count - 1)]
        try:
            for offset, probe in enumerate(probes, start=1):
                probe.bind(("0.0.0.0", base + offset))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def scrape_workers(base: int, count: int) -> list[tuple[str, float]]:
    """(worker, messages processed) from each of `count` metrics ports from `base`."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    found = []
    for port in range(base, base + count):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            if family.name == "fleet_messages_processed":
                workers = {s.labels["worker"] for s in family.samples}
                assert len(workers) == 1, workers
                found.append((workers.pop(), sum(s.value for s in family.samples)))
    return found


def wait_for_order(database: str, order_id: str, seconds: float) -> str | None:
    """The order's status once it left 'pending' (or the last one seen when time is up)."""
    import asyncio

    import asyncpg

    async def status() -> str | None:
        connection = await asyncpg.connect(database)
        try:
            value: str | None = await connection.fetchval(
                "SELECT status FROM orders WHERE order_id = $1", order_id
            )
            return value
        finally:
            await connection.close()

    deadline = time.monotonic() + seconds
    seen = asyncio.run(status())
    while seen in (None, "pending") and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = asyncio.run(status())
    return seen


def fleet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


class TestUpAndDemo:
    def test_fleet_up_with_standins_then_demo_balances_the_books(
        self, broker: Broker, database: str, tmp_path: Path
    ) -> None:
        """`fleet up` applies the topology and runs its `processes` (the stand-ins),
        every worker replica, the webhook dispatcher and the ingress; `fleet demo`
        sends its mix, and everything ends and reconciles."""
        # Given: the reference topology with its stand-ins on a free port
        port = free_port()
        ingress_port = free_port()
        console_port = free_port()
        metrics_base = free_ports(WORKER_PROCESSES)
        topology = tmp_path / "fleet.yaml"
        topology.write_text(
            TOPOLOGY_FILE.read_text().replace('--port, "8765"', f'--port, "{port}"')
        )
        base = f"http://127.0.0.1:{port}"
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "--log-format",
                "json",
                "up",
                "--file",
                str(topology),
                "--url",
                broker.amqp_url,
                "--management-url",
                broker.management_url,
                "--database-url",
                database,
                "--metrics-port",
                str(metrics_base),
                "--ingress-port",
                str(ingress_port),
                "--console-port",
                str(console_port),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=fleet_env(
                FLEET_GATEWAY_URL=f"{base}/gateway",
                FLEET_CARRIER_URL=f"{base}/carrier",
                FLEET_NOTIFY_WEBHOOK_URL=f"{base}/webhooks/notifications",
                FLEET_NOTIFY_WEBHOOK_SECRET=new_secret(),
            ),
        )
        consuming = threading.Semaphore(0)
        output: list[str] = []

        def read() -> None:
            assert up.stderr is not None
            for line in up.stderr:
                output.append(line.rstrip())
                if '"worker.consuming"' in line:
                    consuming.release()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 90
            for _ in range(WORKER_PROCESSES):
                assert consuming.acquire(timeout=max(0.1, deadline - time.monotonic())), "\n".join(
                    output[-20:]
                )
            # When
            demo = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "workers.cli",
                    "demo",
                    "--orders",
                    "60",
                    "--seed",
                    "5",
                    "--timeout",
                    "90",
                    "--url",
                    broker.amqp_url,
                    "--database-url",
                    database,
                ],
                capture_output=True,
                text=True,
                timeout=150,
                env=fleet_env(FLEET_GATEWAY_URL=f"http://127.0.0.1:{port}/gateway"),
            )
            print("\n" + demo.stdout)
            served = scrape_workers(metrics_base, WORKER_PROCESSES)
            # An order placed over HTTP runs the same saga to its end.
            posted = httpx.post(
                f"http://127.0.0.1:{ingress_port}/orders",
                json={
                    "order_id": "web-1",
                    "customer_id": "c-web",
                    "total_cents": 600,
                    "lines": [{"sku": "apple", "qty": 1, "unit_price_cents": 600}],
                },
                headers={"Idempotency-Key": "web-order-1"},
                timeout=10,
            )
            web_status = wait_for_order(database, "web-1", seconds=60)
            # Accepted into the outbox instead: the relay `fleet up` runs publishes it.
            recorded = httpx.post(
                f"http://127.0.0.1:{ingress_port}/orders/outbox",
                json={
                    "order_id": "web-2",
                    "customer_id": "c-web",
                    "total_cents": 600,
                    "lines": [{"sku": "apple", "qty": 1, "unit_price_cents": 600}],
                },
                headers={"Idempotency-Key": "web-order-2"},
                timeout=10,
            )
            outbox_status = wait_for_order(database, "web-2", seconds=60)
            console = httpx.get(f"http://127.0.0.1:{console_port}/", timeout=10)
        finally:
            up.send_signal(signal.SIGTERM)
            code = up.wait(60)
            reader.join(5)
        # Then
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "still pending           0" in demo.stdout
        assert "dead-lettered           0" in demo.stdout
        assert "balanced: stock conserved, ledger = confirmed orders" in demo.stdout
        assert "matches the ledger: no order charged twice" in demo.stdout
        assert "Daily sales (the reporting projection, from the order-events stream):" in (
            demo.stdout
        )
        assert "counted this run's" in demo.stdout
        assert code == 0
        assert posted.status_code == 202, posted.text
        assert web_status in ("confirmed", "cancelled")
        assert recorded.status_code == 202, recorded.text
        assert outbox_status in ("confirmed", "cancelled")
        assert console.status_code == 200, console.text
        assert "payments" in console.text  # the overview lists the topology's queues
        started = [json.loads(x)["process"] for x in output if '"process.started"' in x]
        assert sorted(started) == sorted(
            [
                "standins",
                "inventory#1",
                "inventory#2",
                "payments#1",
                "payments#2",
                "shipping#1",
                "orders#1",
                "notifications#1",
                "reporting#1",
                "webhooks",
                "ingress",
                "outbox",
                "console",
            ]
        )
        assert not [x for x in output if '"process.exited"' in x]
        # Each worker process served its own metrics, on the base port plus its index.
        assert sorted(worker for worker, _ in served) == sorted(
            [
                "inventory",
                "inventory",
                "payments",
                "payments",
                "shipping",
                "orders",
                "notifications",
                "reporting",
            ]
        )
        assert sum(n for worker, n in served if worker == "inventory") >= 60
        assert not [x for x in output if '"metrics.unavailable"' in x]
        # The orders' endings went out as signed webhooks the stand-in accepted.
        assert [x for x in output if '"webhook.delivered"' in x]
        assert not [x for x in output if '"webhook.dead_lettered"' in x]

    def test_demo_without_a_running_fleet_says_how_to_start_it(
        self, broker: Broker, database: str
    ) -> None:
        # Given an empty database / When
        demo = subprocess.run(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "demo",
                "--url",
                broker.amqp_url,
                "--database-url",
                database,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=fleet_env(),
        )
        # Then
        assert demo.returncode == 1
        assert demo.stderr == (
            "error: no orders table in this database: is the reference fleet running? "
            "Start it with `make up` (or `fleet up` in examples/fulfilment)\n"
        )

    def test_fleet_up_refuses_a_database_it_cannot_use(self, broker: Broker) -> None:
        # Given / When
        up = subprocess.run(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "up",
                "--file",
                str(TOPOLOGY_FILE),
                "--url",
                broker.amqp_url,
                "--database-url",
                "postgresql://postgres@127.0.0.1:5432/no_such_database_here",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=fleet_env(),
        )
        # Then
        assert up.returncode == 1
        assert up.stderr.startswith("error: cannot use the database")
        assert "no_such_database_here" in up.stderr
