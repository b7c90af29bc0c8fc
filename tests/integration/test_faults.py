"""The core promise under faults: every published message is processed (its
effect applied once) or parked with its reason; never lost, never applied twice.

Each test prints its figures (published, processed, dead-lettered, duplicates
suppressed) and asserts they reconcile exactly. The default run uses reduced
counts; `pytest -m slow` runs the full ones.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import Broker
from tests.fixtures.ledger_worker import SCHEMA
from tests.integration.conftest import ROOT, PikaPublisher, order
from topology import load
from topology.apply import apply
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, queue_depth, rabbitmqctl

TOPOLOGY = """
exchanges:
  orders: {{}}
queues:
  ledger:
    type: {queue_type}
    delivery_limit: {delivery_limit}
    bind: [{{exchange: orders, routing_key: order.placed}}]
    retry: {{attempts: 3, backoff: 1ms, max_backoff: 10ms, delays: [100ms, 200ms, 500ms, 1s]}}
workers:
  ledger:
    module: tests.fixtures.ledger_worker
    queue: ledger
    prefetch: 50
    concurrency: 10
    crash_limit: {crash_limit}
    commit_batch: {commit_batch}
"""

SIZES = [200, pytest.param(10_000, marks=pytest.mark.slow, id="full")]


class Ledger:
    """The test's topology, database and worker processes."""

    def __init__(self, broker: Broker, database: str, path: Path):
        self.broker = broker
        self.database = database
        self.path = path

    def worker(self, **env: str) -> WorkerProcess:
        return WorkerProcess(
            "ledger",
            topology_file=self.path,
            url=self.broker.amqp_url,
            pythonpath=[ROOT],
            args=["--database-url", self.database],
            env=env,
        )

    async def effects(self) -> tuple[int, int]:
        """(rows, distinct orders) in the effects table."""
        connection = await asyncpg.connect(self.database)
        try:
            row = await connection.fetchrow(
                "SELECT count(*) AS total, count(DISTINCT order_id) AS orders FROM effects"
            )
            return row["total"], row["orders"]
        finally:
            await connection.close()

    async def sql(self, statement: str, *args: Any) -> None:
        connection = await asyncpg.connect(self.database)
        try:
            await connection.execute(statement, *args)
        finally:
            await connection.close()

    async def wait_for_effects(
        self, expected: int, seconds: float, while_waiting: Callable[[], None] | None = None
    ) -> int:
        """Poll until `expected` distinct orders are booked (or time is up)."""
        deadline = time.monotonic() + seconds
        orders = 0
        while time.monotonic() < deadline:
            _, orders = await self.effects()
            if orders >= expected:
                break
            if while_waiting is not None:
                while_waiting()
            await asyncio.sleep(0.2)
        return orders


@pytest.fixture
def ledger(broker: Broker, database: str, tmp_path: Path) -> Callable[..., Any]:
    async def make(
        queue_type: str = "quorum", crash_limit: int = 5, commit_batch: int | str = 1
    ) -> Ledger:
        path = tmp_path / "topology.yaml"
        path.write_text(
            TOPOLOGY.format(
                queue_type=queue_type,
                delivery_limit=20,
                crash_limit=crash_limit,
                commit_batch=commit_batch,
            )
        )
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        setup = Ledger(broker, database, path)
        await setup.sql(SCHEMA)
        return setup

    return make


def publish_orders(
    publisher: PikaPublisher, count: int, start: int = 0, customer: str = "c-1"
) -> None:
    for i in range(start, start + count):
        publisher.publish(
            "orders", "order.placed", order(f"o-{i}", customer_id=customer), message_id=f"m-{i}"
        )


def report(name: str, **figures: int) -> None:
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in figures.items()))


def duplicates_suppressed(*processes: WorkerProcess) -> int:
    return sum(line.get("duplicates", 0) for p in processes for line in p.events("worker.stopped"))


class TestTransientFailures:
    @pytest.mark.parametrize("total", SIZES)
    async def test_random_transient_failures_leave_every_effect_applied_once(
        self, ledger, pika_publisher: PikaPublisher, total: int
    ) -> None:
        """Two processes, 30% of handler calls fail after writing: all processed, once each."""
        setup: Ledger = await ledger()
        publish_orders(pika_publisher, total)
        first = setup.worker(LEDGER_FAIL_RATE="0.3").start()
        second = setup.worker(LEDGER_FAIL_RATE="0.3").start()
        try:
            processed = await setup.wait_for_effects(total, seconds=60 + total / 50)
        finally:
            first.stop()
            second.stop()
        rows, orders = await setup.effects()
        dead = await queue_depth(setup.broker.amqp_url, "ledger.dead")
        retried = sum(len(p.events("message.retried")) for p in (first, second))
        report(
            "transient",
            published=total,
            processed=orders,
            effects=rows,
            dead_lettered=dead,
            retried_via_broker=retried,
            duplicates_suppressed=duplicates_suppressed(first, second),
        )
        assert processed == total
        assert rows == orders == total
        assert dead == 0


class TestKilledWorkers:
    @pytest.mark.parametrize(
        ("total", "every", "delay", "commit_batch"),
        [
            (600, 0.5, "0.05", 1),
            pytest.param(600, 0.5, "0.05", 32, id="group-commit"),
            # The default: batched until the handler's first write, then alone.
            pytest.param(600, 0.5, "0.05", "auto", id="auto"),
            pytest.param(10_000, 2.0, "0", 1, marks=pytest.mark.slow, id="full"),
            pytest.param(10_000, 2.0, "0", 32, marks=pytest.mark.slow, id="full-group-commit"),
            pytest.param(10_000, 2.0, "0", "auto", marks=pytest.mark.slow, id="full-auto"),
        ],
    )
    async def test_sigkill_every_two_seconds_loses_nothing_and_applies_nothing_twice(
        self,
        ledger,
        pika_publisher: PikaPublisher,
        total: int,
        every: float,
        delay: str,
        commit_batch: int | str,
    ) -> None:
        """A worker is killed with SIGKILL every 2 s (0.5 s on the short run, whose bookings
        take 50 ms to keep work in flight) and restarted; the books still balance, with a
        transaction per delivery, with grouped commits and with `auto`."""
        setup: Ledger = await ledger(commit_batch=commit_batch)
        publish_orders(pika_publisher, total)
        env = {"LEDGER_FAIL_RATE": "0.1", "LEDGER_DELAY": delay}
        processes = [setup.worker(**env).start() for _ in range(2)]
        finished = [*processes]
        kills = 0
        next_kill = time.monotonic() + every
        deadline = time.monotonic() + 120 + total / 50

        while time.monotonic() < deadline:
            _, orders = await setup.effects()
            if orders >= total:
                break
            if time.monotonic() >= next_kill:
                victim = random.randrange(2)
                processes[victim].kill()
                kills += 1
                processes[victim] = setup.worker(**env).start()
                finished.append(processes[victim])
                next_kill = time.monotonic() + every
            await asyncio.sleep(0.1)
        for process in processes:
            process.stop()
        rows, orders = await setup.effects()
        dead = await queue_depth(setup.broker.amqp_url, "ledger.dead")
        report(
            "sigkill" if commit_batch == 1 else f"sigkill commit_batch={commit_batch}",
            published=total,
            processed=orders,
            effects=rows,
            dead_lettered=dead,
            kills=kills,
            duplicates_suppressed=duplicates_suppressed(*finished),
        )
        assert kills >= 1
        assert rows == orders == total
        assert dead == 0


class TestBrokerRestart:
    @pytest.mark.parametrize("total", SIZES)
    async def test_every_confirmed_message_is_processed_across_a_broker_restart(
        self, ledger, broker: Broker, broker_ctl: list[str], total: int
    ) -> None:
        """RabbitMQ is restarted mid-flow; workers reconnect and finish everything confirmed."""
        setup: Ledger = await ledger()
        publisher = PikaPublisher(broker.amqp_url)
        publish_orders(publisher, total // 2)
        publisher.close()
        workers = [setup.worker().start() for _ in range(2)]
        try:
            await _wait_until(lambda: setup.effects(), lambda e: e[1] > 0, 30)
            await rabbitmqctl("stop_app", "start_app", "await_startup", ctl=broker_ctl)

            async def consuming() -> list[int]:
                return [len(w.events("worker.consuming")) for w in workers]

            await _wait_until(consuming, lambda counts: min(counts) >= 2, 60)
            publisher = PikaPublisher(broker.amqp_url)
            publish_orders(publisher, total - total // 2, start=total // 2)
            publisher.close()
            processed = await setup.wait_for_effects(total, seconds=90 + total / 50)
        finally:
            for worker in workers:
                worker.stop()
        rows, orders = await setup.effects()
        dead = await queue_depth(broker.amqp_url, "ledger.dead")
        reconnects = sum(len(w.events("worker.consuming")) - 1 for w in workers)
        report(
            "broker-restart",
            published=total,
            processed=orders,
            effects=rows,
            dead_lettered=dead,
            reconnects=reconnects,
            duplicates_suppressed=duplicates_suppressed(*workers),
        )
        assert reconnects >= 2
        assert processed == total
        assert rows == orders == total


class TestPermanentFailures:
    async def test_permanent_failures_are_parked_then_replayed_once_the_cause_is_fixed(
        self, ledger, broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        """Rejected messages wait in ledger.dead with their reason; `fleet dlq replay` after
        the fix processes them and empties the dead-letter queue."""
        setup: Ledger = await ledger()
        await setup.sql("INSERT INTO blocked VALUES ('mallory')")
        publish_orders(pika_publisher, 20)
        publish_orders(pika_publisher, 5, start=100, customer="mallory")
        with setup.worker():
            assert await setup.wait_for_effects(20, seconds=30) == 20
            parked = await _wait_until(
                lambda: queue_depth(broker.amqp_url, "ledger.dead"), lambda n: n == 5, 30
            )
            shown = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "workers.cli",
                    "dlq",
                    "show",
                    "ledger",
                    "--json",
                    "--url",
                    broker.amqp_url,
                    "--management-url",
                    broker.management_url,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert shown.stdout.count('"reason": "permanent"') == 5
            assert "customer mallory is blocked" in shown.stdout
            await setup.sql("DELETE FROM blocked")
            replayed = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "workers.cli",
                    "dlq",
                    "replay",
                    "ledger",
                    "--all",
                    "--url",
                    broker.amqp_url,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            assert "Replayed 5 message(s)" in replayed.stdout
            assert await setup.wait_for_effects(25, seconds=30) == 25
        rows, orders = await setup.effects()
        left = await queue_depth(broker.amqp_url, "ledger.dead")
        report(
            "permanent",
            published=25,
            processed=orders,
            parked=parked,
            replayed=5,
            dead_lettered_after=left,
        )
        assert rows == orders == 25
        assert left == 0


class TestPoisonMessages:
    @pytest.mark.parametrize("queue_type", ["classic", "quorum"])
    async def test_a_message_that_crashes_its_worker_is_parked_after_the_delivery_limit(
        self, ledger, broker: Broker, pika_publisher: PikaPublisher, queue_type: str
    ) -> None:
        """A poison message kills the process each time; after the crash limit it is parked,
        and the messages prefetched with it (redelivered after every crash too) are not:
        suspects run alone, and only the one running when the process died is counted."""
        setup: Ledger = await ledger(queue_type=queue_type, crash_limit=3)
        pika_publisher.publish(
            "orders", "order.placed", order("poison", customer_id="poison"), message_id="poison-1"
        )
        publish_orders(pika_publisher, 10)
        crashes = 0
        while crashes < 10:
            process = setup.worker().start()
            code = process.wait(15)
            if code is None:  # survived: the poison is gone from the queue
                process.stop()
                break
            assert code == 13
            crashes += 1
        [parked] = await collect(broker.amqp_url, "ledger.dead", 1, seconds=10)
        rows, orders = await setup.effects()
        report(f"poison-{queue_type}", crashes=crashes, parked=1, processed=orders)
        assert crashes == 3
        assert parked.message_id == "poison-1"
        assert parked.headers[h.REASON] == "crash-loop"
        assert rows == orders == 10


async def _wait_until(probe: Callable[[], Any], done: Callable[[Any], bool], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    value = await probe()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        value = await probe()
    return value
