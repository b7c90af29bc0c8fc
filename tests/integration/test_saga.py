"""The reference fleet end to end: real RabbitMQ, real PostgreSQL, real worker
processes, and the stand-in gateway and carrier over real HTTP.

Orders go in with injected stock-outs, declines and gateway errors; the tests
wait until the fleet is quiet and then check the books: every saga ended
exactly once, stock is conserved, the ledger holds exactly the confirmed
orders, and the gateway kept no more than the ledger says. Figures print with -s.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fulfilment import TOPOLOGY_FILE
from fulfilment.contracts import UNPROCESSABLE
from fulfilment.standins import Faults
from fulfilment.workers import audit

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.reference import WORKERS, Fleet, Order, assert_expected, fleet, mix
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, queue_depth

__all__ = ["fleet"]  # the fixture, imported for pytest


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

        def restart(name: str) -> WorkerProcess:
            """Start a replacement, trying again if it dies starting (as `fleet up` would)."""
            for _ in range(4):
                try:
                    return setup.worker(name).start(60)
                except RuntimeError as error:
                    lines = str(error).splitlines()
                    failed_starts.append(next((x for x in lines if "Error" in x), lines[-1]))
            raise RuntimeError(f"worker {name} failed to start 4 times: {failed_starts[-1]}")

        starting: dict[str, Future[WorkerProcess]] = {}
        failed_starts: list[str] = []

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
            starting[victim] = restarts.submit(restart, victim.split("#")[0])
            next_kill = time.monotonic() + every

        try:
            counts = await setup.wait_finished(orders, seconds=60 + total / 5, while_waiting=chaos)
        finally:
            restarts.shutdown(wait=True)
        await setup.wait_quiet(30)
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        setup.report("saga-sigkill", summary, kills=kills, failed_starts=len(failed_starts))
        for failure in failed_starts:
            print(f"  a replacement failed to start: {failure}")
        parked = await setup.query(
            lambda db: db.fetch(
                "SELECT worker, type, detail FROM fleet_events WHERE outcome = 'dead-lettered'"
            )
        )
        for row in parked:
            print(f"  dead-lettered by {row['worker']}: {row['type']} ({row['detail']})")
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
        # Quiet for longer than the HTTP timeout (5 s): no booking or charge is
        # still in flight when the late events arrive.
        await setup.wait_quiet(60, queues=("order-deadlines",), still=6)
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
        await setup.wait_quiet(30, queues=("order-deadlines",), still=6)
        after = setup.standins.snapshot()
        summary = await setup.query(audit.summarize, [o.order_id for o in orders])
        setup.report("deadline", summary, late_events=3 * len(hanging + late))
        assert await setup.outcomes(orders) == outcomes
        assert await setup.problems() == []
        assert len(after["charges"]) == len(before["charges"])
        assert [s for s in after["shipments"] if s["status"] == "booked"] == [
            s for s in before["shipments"] if s["status"] == "booked"
        ]


class TestParkedAndStrayEvents:
    async def test_an_order_whose_order_placed_is_parked_anywhere_is_cancelled_and_compensated(
        self, fleet
    ) -> None:
        """inventory or orders parks an OrderPlaced (a check constraint refuses it): its
        Fault cancels the order, and whatever was held, charged or booked is given back."""
        # Given: constraints that refuse two orders' placement, one in each worker
        setup: Fleet = await fleet()
        setup.start(*WORKERS)

        async def refuse(db: Any) -> None:
            await db.execute(
                "ALTER TABLE orders ADD CONSTRAINT test_refused"
                " CHECK (customer_id IS NULL OR customer_id NOT LIKE '%-refused')"
            )
            await db.execute(
                "ALTER TABLE inventory_reservations ADD CONSTRAINT test_refused"
                " CHECK (status <> 'new' OR order_id NOT LIKE 'inv-%')"
            )

        await setup.query(refuse)
        apple = [{"sku": "apple", "qty": 1, "unit_price_cents": 120}]
        refused = [
            Order("ord-1", "c-1-refused", apple, UNPROCESSABLE),
            Order("inv-1", "c-2", apple, UNPROCESSABLE),
        ]
        normal = [Order(f"n-{i}", f"c-{i}", apple, "confirmed") for i in range(5)]
        # When
        setup.place(refused + normal)
        counts = await setup.wait_finished(refused + normal, seconds=60)
        await setup.wait_quiet(30)
        # Then
        assert counts.get("pending", 0) == 0
        assert_expected(refused + normal, await setup.outcomes(refused + normal))
        assert await setup.problems() == []
        parked = await setup.query(
            lambda db: db.fetch(
                "SELECT worker, correlation_id FROM fleet_events"
                " WHERE outcome = 'dead-lettered' AND type = 'OrderPlaced' ORDER BY worker"
            )
        )
        assert [(r["worker"], r["correlation_id"]) for r in parked] == [
            ("inventory", "inv-1"),
            ("orders", "ord-1"),
        ]

    async def test_an_event_for_an_order_never_placed_changes_nothing_and_is_parked(
        self, fleet, broker: Broker
    ) -> None:
        """A stray ShipmentScheduled (or StockRejected) confirms or cancels nothing."""
        # Given
        setup: Fleet = await fleet()
        setup.start("orders")
        publisher = PikaPublisher(broker.amqp_url)
        # When
        publisher.publish(
            "shipping",
            "shipment.scheduled",
            {"order_id": "ghost-1", "shipment_id": "s-1", "carrier": "parcelco"},
            type="ShipmentScheduled",
            message_id="ghost-1-shipped",
        )
        publisher.publish(
            "inventory",
            "stock.rejected",
            {"order_id": "ghost-2", "reason": "out of stock", "sku": "plum"},
            type="StockRejected",
            message_id="ghost-2-rejected",
        )
        publisher.close()
        parked = await collect(broker.amqp_url, "orders.dead", 2)
        # Then
        assert sorted(m.message_id or "" for m in parked) == ["ghost-1-shipped", "ghost-2-rejected"]
        for message in parked:
            assert message.headers[h.REASON] == "retries-exhausted"
            assert message.headers[h.ERROR_TYPE] == "UnknownOrder"
            assert "was placed" in message.headers[h.ERROR_MESSAGE]
        rows = await setup.query(lambda db: db.fetchval("SELECT count(*) FROM orders"))
        assert rows == 0
        assert await queue_depth(broker.amqp_url, "notifications") == 0


def test_a_stateful_worker_without_a_database_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "--log-level", "warning", "worker", "run", "orders"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=TOPOLOGY_FILE.parent,  # found there: the reference fleet's fleet.yaml
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


class TestGatewayQuota:
    async def test_a_429_with_retry_after_waits_in_the_covering_tier_then_confirms(
        self, fleet
    ) -> None:
        """The gateway tells a 'quota' customer to come back in 2s: payments sends the
        charge to its 2s tier (test tiers 200ms, 1s, 2s), once, and the order confirms."""
        # Given the fleet and an order whose first charge the gateway answers 429
        setup: Fleet = await fleet()
        processes = dict(zip(WORKERS, setup.start(*WORKERS), strict=True))
        apple = {"sku": "apple", "qty": 1, "unit_price_cents": 120}
        order = Order("o-quota", "c-1-quota", [apple], "confirmed")
        # When it is placed
        setup.place([order])
        counts = await setup.wait_finished([order], seconds=30)
        # Then the charge was retried once, through the 2s tier, and the order confirmed
        retried = processes["payments"].events("message.retried")
        assert [(e["to"], e["delay"]) for e in retried] == [("payments.retry.2s", "2s")]
        assert "retry after 2s" in retried[0]["error"]
        assert counts.get("confirmed") == 1
        assert await setup.outcomes([order]) == {"o-quota": "confirmed"}
        assert await setup.problems() == []
