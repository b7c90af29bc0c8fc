"""The reference fleet as real processes for integration tests: its topology
(with test-sized retry tiers and deadline) applied to the test's vhost, its
workers on the test's database, the stand-in gateway and carrier in process.

    setup: Fleet = await fleet(deadline="2s", faults=Faults(error_rate=0.05))
    setup.start("inventory", "payments", ...)
    setup.place(mix(100))
    await setup.wait_finished(orders, seconds=60)
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import fulfilment.contracts  # noqa: F401  (the webhook subscription binds their routing keys)
import pytest
import yaml
from fulfilment import TOPOLOGY_FILE
from fulfilment.standins import Faults, Standins, serve
from fulfilment.workers import audit

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from topology import load
from topology.apply import apply
from workers.standard_webhooks import new_secret
from workers.testing import WebhooksProcess, WorkerProcess, eventually, queue_depth

WORKERS = ("inventory", "payments", "shipping", "orders", "notifications")
STOCK = "apple=1000000,pear=1000000,plum=40,quince=0"


def topology_for_tests(deadline: str, standins_url: str = "http://127.0.0.1:8765") -> str:
    """The reference topology with test-sized retry tiers and deadline, its webhooks
    pointed at the stand-ins."""
    spec = yaml.safe_load(TOPOLOGY_FILE.read_text())
    for subscription in spec.get("webhooks", {}).values():
        subscription["url"] = subscription["url"].replace("http://127.0.0.1:8765", standins_url)
        subscription["retry"] = {"delays": ["200ms", "1s", "2s"]}
    for queue in spec["queues"].values():
        if "delay" not in queue and queue.get("type") != "stream":
            queue["retry"] = {
                "attempts": 3,
                "backoff": "20ms",
                "max_backoff": "200ms",
                "delays": ["200ms", "1s", "2s"],
            }
        if "delay" in queue:
            queue["delay"]["ttl"] = deadline
    return yaml.safe_dump(spec, sort_keys=False)


@dataclass(frozen=True)
class Order:
    """An order to place and the end it must reach (None: either end is right)."""

    order_id: str
    customer_id: str
    lines: list[dict[str, Any]]
    expect: str | None  # confirmed | out-of-stock | payment-declined | deadline

    @property
    def total(self) -> int:
        return sum(line["qty"] * line["unit_price_cents"] for line in self.lines)

    def body(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "total_cents": self.total,
            "lines": self.lines,
        }


def mix(count: int, seed: int = 7) -> list[Order]:
    """Orders with stock-outs, declines, gateway errors and timeouts mixed in."""
    rng = random.Random(seed)
    orders = []
    for i in range(count):
        kind = rng.random()
        apple = {"sku": "apple", "qty": rng.randint(1, 5), "unit_price_cents": 120}
        pear = {"sku": "pear", "qty": rng.randint(1, 3), "unit_price_cents": 90}
        if kind < 0.10:  # never in stock
            lines, customer, expect = (
                [apple, {"sku": "quince", "qty": 1, "unit_price_cents": 300}],
                f"c-{i}",
                "out-of-stock",
            )
        elif kind < 0.20:  # scarce: 40 plums for everyone
            lines, customer, expect = (
                [{"sku": "plum", "qty": rng.randint(1, 3), "unit_price_cents": 80}],
                f"c-{i}",
                None,
            )
        elif kind < 0.30:
            lines, customer, expect = [apple], f"c-{i}-decline", "payment-declined"
        elif kind < 0.42:  # 503 twice per call, then fine
            lines, customer, expect = [apple, pear], f"c-{i}-flaky", "confirmed"
        elif kind < 0.47:  # first call hangs past the client's timeout
            lines, customer, expect = [pear], f"c-{i}-timeout", "confirmed"
        else:
            lines, customer, expect = [apple, pear][: rng.randint(1, 2)], f"c-{i}", "confirmed"
        orders.append(Order(f"o-{i}", customer, lines, expect))
    return orders


class Fleet:
    """The reference fleet on the test's vhost and database, with stand-ins in process."""

    def __init__(
        self, broker: Broker, database: str, path: Path, standins: Standins, env: dict[str, str]
    ):
        self.broker = broker
        self.database = database
        self.path = path
        self.standins = standins
        self.env = env
        self.processes: list[WorkerProcess] = []

    def worker(self, name: str) -> WorkerProcess:
        process = WorkerProcess(
            name,
            topology_file=self.path,
            url=self.broker.amqp_url,
            pythonpath=[ROOT],
            args=["--database-url", self.database],
            env=self.env,
        )
        self.processes.append(process)
        return process

    def start_webhooks(self) -> WebhooksProcess:
        """Start the webhook dispatcher (recording to the test's database)."""
        process = WebhooksProcess(
            topology_file=self.path,
            url=self.broker.amqp_url,
            args=["--database-url", self.database],
            env=self.env,
        )
        self.processes.append(process)
        return process.start(60)

    def start(self, *names: str) -> list[WorkerProcess]:
        """Start these workers (one process per name) together; return once all consume."""
        processes = [self.worker(name) for name in names]
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda p: p.start(60), processes))
        return processes

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def place(self, orders: list[Order]) -> None:
        publisher = PikaPublisher(self.broker.amqp_url)
        try:
            for order in orders:
                publisher.publish(
                    "orders",
                    "order.placed",
                    order.body(),
                    message_id=f"{order.order_id}-placed",
                    correlation_id=order.order_id,
                )
        finally:
            publisher.close()

    async def query(self, function: Callable[..., Any], *args: Any) -> Any:
        connection = await asyncpg.connect(self.database)
        try:
            return await function(connection, *args)
        finally:
            await connection.close()

    async def wait_finished(
        self, orders: list[Order], seconds: float, while_waiting: Callable[[], None] | None = None
    ) -> dict[str, int]:
        """Wait until no order is pending (`seconds` at most); the status counts.

        Out of time, the counts are returned all the same: the callers report them,
        then assert that none is pending.
        """
        ids = [o.order_id for o in orders]
        counts: dict[str, int] = {}

        async def finished() -> bool:
            nonlocal counts
            counts = await self.query(audit.status_counts, ids)
            if counts.get("pending", 0) and while_waiting is not None:
                while_waiting()
            return not counts.get("pending", 0)

        with contextlib.suppress(AssertionError):  # out of time: the caller's assert says so
            await eventually(finished, what="no order pending", timeout=seconds, interval=0.25)
        return counts

    async def wait_quiet(
        self, seconds: float, *, queues: tuple[str, ...] = (), still: float = 1.5
    ) -> None:
        """Until the timeline has not grown for `still` seconds and the work queues are empty
        (`seconds` at most: the callers' checks then say what is still moving).

        Deliveries held unacknowledged (a handler waiting on a slow HTTP call adds
        nothing to the timeline) count as moving, as the management API reports
        them: `still` must outlast its 5 s statistics interval.
        """
        # The retry tiers too: a delivery waiting out its delay is work still to come.
        names = [*WORKERS, *queues, *self.retry_queues()]
        last, still_since = -1, time.monotonic()

        async def quiet() -> bool:
            nonlocal last, still_since
            rows = await self.query(lambda db: db.fetchval("SELECT count(*) FROM fleet_events"))
            depths = [await queue_depth(self.broker.amqp_url, q) for q in names]
            if rows != last or any(depths) or self.unacknowledged():
                last, still_since = rows, time.monotonic()
                return False
            return time.monotonic() - still_since > still

        with contextlib.suppress(AssertionError):
            await eventually(quiet, what=f"{still}s of quiet", timeout=seconds, interval=0.25)

    def _queues(self) -> list[dict[str, Any]]:
        """The management API's view of the vhost's queues (its counts lag by up to 5 s)."""
        with self.broker.api() as api:
            response = api.get(
                f"/api/queues/{quote(self.broker.vhost, safe='')}",
                params={"columns": "name,messages_unacknowledged"},
            )
            response.raise_for_status()
            queues: list[dict[str, Any]] = response.json()
            return queues

    def retry_queues(self) -> list[str]:
        """The vhost's retry-tier queues (`<queue>.retry.<delay>`)."""
        return [q["name"] for q in self._queues() if ".retry." in q["name"]]

    def unacknowledged(self) -> int:
        """Deliveries handlers hold (a slow or hanging HTTP call adds no timeline row)."""
        return sum(int(q.get("messages_unacknowledged") or 0) for q in self._queues())

    async def problems(self) -> list[str]:
        """Every invariant that does not hold, books and gateway together."""
        problems: list[str] = await self.query(audit.check_books)
        ledger = await self.query(audit.ledger_net)
        problems += audit.reconcile_gateway(self.standins.snapshot()["charges"], ledger)
        return problems

    async def outcomes(self, orders: list[Order]) -> dict[str, str]:
        rows = await self.query(
            lambda db: db.fetch(
                "SELECT order_id, status, reason FROM orders WHERE order_id = ANY($1::text[])",
                [o.order_id for o in orders],
            )
        )
        return {
            r["order_id"]: r["reason"] if r["status"] == "cancelled" else r["status"] for r in rows
        }

    def report(self, name: str, summary: audit.Summary, **extra: Any) -> None:
        charges = self.standins.snapshot()["charges"]
        p50, p95 = summary.percentile(0.5), summary.percentile(0.95)
        figures = {
            "orders": summary.orders,
            "confirmed": summary.confirmed,
            **{f"cancelled[{k}]": v for k, v in sorted(summary.cancelled.items())},
            "pending": summary.pending,
            "retried": summary.retried,
            "dead_lettered": summary.dead_lettered,
            "gateway_requests": sum(self.standins.requests.values()),
            "gateway_refunded": sum(c["status"] == "refunded" for c in charges),
            "p50_ms": round(p50) if p50 is not None else "-",
            "p95_ms": round(p95) if p95 is not None else "-",
            **extra,
        }
        print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture
def fleet(broker: Broker, database: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    with ExitStack() as stack:

        async def make(
            deadline: str = "30s", faults: Faults | None = None, http_timeout: float = 0.5
        ) -> Fleet:
            secret = new_secret()
            standins = stack.enter_context(
                serve(port=0, faults=faults or Faults(), webhook_secrets=[secret])
            )
            path = tmp_path / "fleet.yaml"
            path.write_text(topology_for_tests(deadline, standins.url))
            await apply(load(path), broker.amqp_url, management_url=broker.management_url)
            env = {
                "FLEET_NOTIFY_WEBHOOK_SECRET": secret,
                "FLEET_GATEWAY_URL": f"{standins.url}/gateway",
                "FLEET_CARRIER_URL": f"{standins.url}/carrier",
                "FLEET_HTTP_TIMEOUT": str(http_timeout),
                "FLEET_INVENTORY_STOCK": STOCK,
            }
            made = Fleet(broker, database, path, standins, env)
            stack.callback(made.stop)
            return made

        yield make


def assert_expected(orders: list[Order], outcomes: dict[str, str]) -> None:
    wrong = [
        f"{o.order_id} ({o.customer_id}): expected {o.expect}, got {outcomes.get(o.order_id)}"
        for o in orders
        if o.expect is not None and outcomes.get(o.order_id) != o.expect
    ]
    assert wrong == []
