"""The reference fleet end to end: real RabbitMQ, real PostgreSQL, real worker
processes, and the stand-in gateway and carrier over real HTTP.

Orders go in with injected stock-outs, declines and gateway errors; the tests
wait until the fleet is quiet and then check the books: every saga ended
exactly once, stock is conserved, the ledger holds exactly the confirmed
orders, and the gateway kept no more than the ledger says. Figures print with -s.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from topology import DEFAULT_FILE, load
from topology.apply import apply
from workers.fulfilment import audit
from workers.standins import Faults, Standins, serve
from workers.testing import WorkerProcess, queue_depth

WORKERS = ("inventory", "payments", "shipping", "orders", "notifications")
STOCK = "apple=1000000,pear=1000000,plum=40,quince=0"


def topology_for_tests(deadline: str) -> str:
    """The reference topology with test-sized retry tiers and deadline."""
    spec = yaml.safe_load(DEFAULT_FILE.read_text())
    for queue in spec["queues"].values():
        if "retry" in queue:
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
        """Poll until no order is pending (or time is up); the status counts."""
        ids = [o.order_id for o in orders]
        deadline = time.monotonic() + seconds
        counts = await self.query(audit.status_counts, ids)
        while counts.get("pending", 0) and time.monotonic() < deadline:
            if while_waiting is not None:
                while_waiting()
            await asyncio.sleep(0.25)
            counts = await self.query(audit.status_counts, ids)
        return counts

    async def wait_quiet(self, seconds: float, *, queues: tuple[str, ...] = ()) -> None:
        """Until the timeline stops growing and the work queues are empty."""
        names = [*WORKERS, *queues]
        deadline = time.monotonic() + seconds
        last, still_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            rows = await self.query(lambda db: db.fetchval("SELECT count(*) FROM fleet_events"))
            depths = [await queue_depth(self.broker.amqp_url, q) for q in names]
            if rows != last or any(depths):
                last, still_since = rows, time.monotonic()
            elif time.monotonic() - still_since > 1.5:
                return
            await asyncio.sleep(0.25)

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
            path = tmp_path / "fleet.yaml"
            path.write_text(topology_for_tests(deadline))
            await apply(load(path), broker.amqp_url, management_url=broker.management_url)
            standins = stack.enter_context(serve(port=0, faults=faults or Faults()))
            env = {
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


class TestFulfilment:
    @pytest.mark.parametrize("total", [180, pytest.param(1000, marks=pytest.mark.slow, id="full")])
    async def test_every_saga_ends_once_and_the_books_balance(self, fleet, total: int) -> None:
        """Stock-outs, declines, 503s and timeouts (plus 5% random 503s anywhere): each
        order ends as its kind says, and stock, ledger and gateway reconcile."""
        setup: Fleet = await fleet(faults=Faults(error_rate=0.05, hang_seconds=2))
        setup.start(*WORKERS)
        orders = mix(total)
        started = time.monotonic()
        setup.place(orders)
        counts = await setup.wait_finished(orders, seconds=40 + total / 10)
        elapsed = time.monotonic() - started
        await setup.wait_quiet(30)
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        setup.report("saga", summary, seconds=round(elapsed, 1))
        assert counts.get("pending", 0) == 0
        assert_expected(orders, await setup.outcomes(orders))
        assert await setup.problems() == []
        assert summary.dead_lettered == 0

    @pytest.mark.parametrize(
        ("total", "max_kills"),
        [(150, 10), pytest.param(1000, 60, marks=pytest.mark.slow, id="full")],
    )
    async def test_sigkilled_workers_never_charge_an_order_twice(
        self, fleet, total: int, max_kills: int
    ) -> None:
        """A worker (payments most often) is killed with SIGKILL every second (up to
        `max_kills` times) and restarted while slow charges are in flight: still one
        charge per order at most. The deadline is long: this test is about money."""
        every = 1.0
        setup: Fleet = await fleet(
            deadline="5m",
            faults=Faults(error_rate=0.03, slow_rate=0.3, slow_seconds=0.15, hang_seconds=2),
            http_timeout=1.0,
        )
        names = ["payments#1", "payments#2", "inventory", "shipping", "orders", "notifications"]
        started = setup.start(*(name.split("#")[0] for name in names))
        running = dict(zip(names, started, strict=True))
        orders = mix(total, seed=11)
        setup.place(orders)
        kills = 0
        next_kill = time.monotonic() + every
        rng = random.Random(3)

        restarts = ThreadPoolExecutor(4)
        starting: dict[str, Future[WorkerProcess]] = {}

        def chaos() -> None:
            """Kill one process; its replacement starts in the background meanwhile."""
            nonlocal kills, next_kill
            for name, future in list(starting.items()):
                if future.done():
                    running[name] = future.result()
                    del starting[name]
            if time.monotonic() < next_kill or kills >= max_kills:
                return
            victims = ["payments#1", "payments#2", "payments#1", "shipping", "inventory", "orders"]
            victim = rng.choice([v for v in victims if v not in starting] or victims)
            if victim in starting:
                return
            running[victim].kill()
            kills += 1
            starting[victim] = restarts.submit(setup.worker(victim.split("#")[0]).start, 60)
            next_kill = time.monotonic() + every

        try:
            counts = await setup.wait_finished(orders, seconds=60 + total / 5, while_waiting=chaos)
        finally:
            restarts.shutdown(wait=True)
        await setup.wait_quiet(30)
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        setup.report("saga-sigkill", summary, kills=kills)
        assert kills >= 3
        assert counts.get("pending", 0) == 0
        assert_expected(orders, await setup.outcomes(orders))
        assert await setup.problems() == []


class TestDeadlines:
    async def test_stalled_sagas_are_cancelled_and_late_events_change_nothing(
        self, fleet, broker: Broker
    ) -> None:
        """Deadline 2 s. The carrier hangs for some customers, the gateway answers others
        after 3 s (their PaymentCaptured arrives after the deadline): those are cancelled
        with reason 'deadline', with stock released and money refunded; late events
        published afterwards neither resurrect them nor move stock or money."""
        setup: Fleet = await fleet(
            deadline="2s", faults=Faults(slow_seconds=3, hang_seconds=8), http_timeout=5
        )
        setup.start(*WORKERS)
        hanging = [
            Order(
                f"h-{i}",
                f"c-{i}-hang",
                [{"sku": "plum", "qty": 2, "unit_price_cents": 80}],
                "deadline",
            )
            for i in range(4)
        ]
        late = [
            Order(
                f"l-{i}",
                f"c-{i}-slow",
                [{"sku": "plum", "qty": 1, "unit_price_cents": 80}],
                "deadline",
            )
            for i in range(3)
        ]
        normal = [
            Order(f"n-{i}", f"c-{i}", [{"sku": "apple", "qty": 1, "unit_price_cents": 120}], None)
            for i in range(10)
        ]
        orders = hanging + late + normal
        setup.place(orders)
        counts = await setup.wait_finished(orders, seconds=30)
        await setup.wait_quiet(40, queues=("order-deadlines",))
        outcomes = await setup.outcomes(orders)
        assert counts.get("pending", 0) == 0
        assert_expected(hanging + late, outcomes)
        assert await setup.problems() == []
        refunded = {
            c["order_id"] for c in setup.standins.snapshot()["charges"] if c["status"] == "refunded"
        }
        assert {o.order_id for o in late} <= refunded

        before = setup.standins.snapshot()
        publisher = PikaPublisher(broker.amqp_url)
        for order in hanging + late:
            oid = order.order_id
            reserved = {
                "order_id": oid,
                "customer_id": order.customer_id,
                "reservation_id": "r",
                "lines": order.lines,
                "total_cents": order.total,
            }
            captured = {
                "order_id": oid,
                "customer_id": order.customer_id,
                "payment_id": "p-late",
                "amount_cents": order.total,
            }
            shipped = {"order_id": oid, "shipment_id": "s-late", "carrier": "parcelco"}
            for exchange, key, type_name, body in (
                ("inventory", "stock.reserved", "StockReserved", reserved),
                ("payments", "payment.captured", "PaymentCaptured", captured),
                ("shipping", "shipment.scheduled", "ShipmentScheduled", shipped),
            ):
                publisher.publish(
                    exchange,
                    key,
                    body,
                    type=type_name,
                    message_id=f"{oid}-late-{key}",
                    correlation_id=oid,
                )
        publisher.close()
        await setup.wait_quiet(20, queues=("order-deadlines",))
        after = setup.standins.snapshot()
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        setup.report("deadline", summary, late_events=3 * len(hanging + late))
        assert await setup.outcomes(orders) == outcomes
        assert await setup.problems() == []
        assert len(after["charges"]) == len(before["charges"])
        assert [s for s in after["shipments"] if s["status"] == "booked"] == [
            s for s in before["shipments"] if s["status"] == "booked"
        ]


def test_a_stateful_worker_without_a_database_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "--log-level", "warning", "worker", "run", "orders"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: worker 'orders' keeps its state in PostgreSQL: "
        "pass --database-url or set FLEET_DATABASE_URL"
    ]


def test_the_standins_command_serves_the_gateway(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "standins", "run", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = line.split("listening on ")[1].split()[0]
        answer = httpx.post(
            f"{url}/gateway/charges",
            json={"order_id": "o-1", "customer_id": "c", "amount_cents": 100},
            headers={"Idempotency-Key": "k-1"},
        )
        assert answer.status_code == 201
    finally:
        process.terminate()
        assert process.wait(10) == 0
