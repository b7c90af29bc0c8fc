"""Per-key order (`order_by`) on the real broker: a key's deliveries are handled in
publish order while other keys run at once, every delivery is acked once (no multiple
ack passes an unfinished one), and the documented edges: in-process retries hold the
key, a retry tier's message is overtaken, a delivery without a key runs unordered.

Across processes, a queue with a single active consumer keeps the order over a SIGKILL
failover (the inbox removing the redelivered duplicates).

The workers run in the test's process (the real runtime, each test its own vhost),
except in the failover test, so their handlers' records can be read directly.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import asyncpg

from tests.conftest import Broker
from tests.fixtures import order_workers
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.test_flow_control import running
from topology import Topology, load, loads
from topology.apply import apply
from workers.testing import WorkerProcess, eventually, queue_depth

TOPOLOGY = """
exchanges:
  ordered: {}
  unordered: {}
  tenants: {}
  flaky: {}
  metered: {}
queues:
  ordered: {bind: [{exchange: ordered}]}
  unordered: {bind: [{exchange: unordered}]}
  tenants: {type: classic, bind: [{exchange: tenants}]}
  flaky:
    type: classic
    bind: [{exchange: flaky}]
    retry: {attempts: 3, backoff: 80ms, max_backoff: 80ms, delays: [300ms]}
  metered: {type: classic, bind: [{exchange: metered}]}
workers:
  ordered:
    {module: tests.fixtures.order_workers, queue: ordered, prefetch: 128, concurrency: 16,
     order_by: key}
  unordered:
    {module: tests.fixtures.order_workers, queue: unordered, prefetch: 128, concurrency: 16}
  tenants:
    {module: tests.fixtures.order_workers, queue: tenants, prefetch: 64, concurrency: 16,
     order_by: "header:x-tenant"}
  flaky:
    {module: tests.fixtures.order_workers, queue: flaky, prefetch: 32, concurrency: 8,
     order_by: key}
  metered:
    {module: tests.fixtures.order_workers, queue: metered, prefetch: 64, concurrency: 16,
     order_by: key, rate: 400/s, burst: 20}
"""


async def topology_on(broker: Broker) -> Topology:
    topology = loads(TOPOLOGY)
    await apply(topology, broker.amqp_url, management_url=broker.management_url)
    order_workers.reset()
    return topology


def publish(
    broker: Broker, exchange: str, steps: Iterable[dict[str, object]], type: str = "Step"
) -> None:
    publisher = PikaPublisher(broker.amqp_url)
    try:
        for i, step in enumerate(steps):
            headers: dict[str, object] = {"version": 1}
            tenant = step.pop("tenant", None)
            if tenant is not None:
                headers["x-tenant"] = tenant
            publisher.publish(
                exchange, "step.taken", step, type=type, message_id=f"s-{i}", headers=headers
            )
    finally:
        publisher.close()


def violations(calls: list[tuple[str | None, int]]) -> int:
    """Calls of a key that came after a later message of the same key."""
    last: dict[str | None, int] = {}
    count = 0
    for key, seq in calls:
        if key in last and seq < last[key]:
            count += 1
        last[key] = max(seq, last.get(key, seq))
    return count


def plan(keys: int, total: int, seed: int) -> list[dict[str, object]]:
    """`total` steps over `keys` keys, each key's numbered in publish order, each taking
    0 to 8 ms."""
    rng = random.Random(seed)
    made: Counter[str] = Counter()
    steps: list[dict[str, object]] = []
    for _ in range(total):
        key = f"k{rng.randrange(keys)}"
        steps.append({"key": key, "seq": made[key], "ms": rng.randrange(9)})
        made[key] += 1
    return steps


async def settled(broker: Broker, queue: str) -> bool:
    """Nothing ready and nothing unacknowledged, as the management API counts them."""
    view = broker.queue(queue)
    return view.get("messages") == 0 and view.get("messages_unacknowledged") == 0


class TestManyKeys:
    async def test_each_keys_order_holds_under_concurrency_and_every_delivery_is_acked_once(
        self, broker: Broker
    ) -> None:
        # Given 2,000 steps over 40 keys, each taking 0-8 ms at random, queued before
        # a worker with concurrency 16 ordered by `key` starts
        topology = await topology_on(broker)
        steps = plan(keys=40, total=2000, seed=19)
        publish(broker, "ordered", [dict(s) for s in steps])
        # When it handles them all
        started = time.monotonic()
        async with running(topology, "ordered", broker.amqp_url) as counters:
            await eventually(
                lambda: len(order_workers.calls) >= 2000, timeout=60, what="2,000 handled"
            )
            elapsed = time.monotonic() - started
            # Then the queue ends empty with nothing unacknowledged while still consumed
            await eventually(lambda: settled(broker, "ordered"), timeout=30, what="all acked")
        calls, peak = list(order_workers.calls), order_workers.peak[0]
        print(
            f"order_by: 2,000 steps over 40 keys in {elapsed:.2f}s, peak {peak} at once, "
            f"{violations(calls)} order violations"
        )
        # Each key's steps were handled in publish order, each exactly once
        assert violations(calls) == 0
        assert sorted(calls) == sorted((str(s["key"]), int(str(s["seq"]))) for s in steps)
        for key in {s["key"] for s in steps}:
            mine = [seq for k, seq in calls if k == key]
            assert mine == list(range(len(mine)))
        # Different keys ran at once
        assert peak >= 8, peak
        # Acked once each: no channel error redelivered anything, nothing was left
        assert (counters[0].processed, counters[0].duplicates, counters[0].retried) == (2000, 0, 0)
        assert await queue_depth(broker.amqp_url, "ordered") == 0

    async def test_without_order_by_the_same_load_runs_out_of_order(self, broker: Broker) -> None:
        """The control: the same steps on the same settings, but no `order_by`."""
        topology = await topology_on(broker)
        steps = plan(keys=40, total=2000, seed=19)
        publish(broker, "unordered", [dict(s) for s in steps])
        async with running(topology, "unordered", broker.amqp_url):
            await eventually(
                lambda: len(order_workers.calls) >= 2000, timeout=60, what="2,000 handled"
            )
        found = violations(order_workers.calls)
        print(f"without order_by: {found} order violations in 2,000 steps")
        assert found > 50


class TestKeys:
    async def test_a_header_orders_and_deliveries_without_one_run_unordered(
        self, broker: Broker
    ) -> None:
        # Given 3 tenants' steps (header x-tenant) and 12 steps without the header,
        # each of those taking 300 ms
        topology = await topology_on(broker)
        keyed = [
            {"seq": i // 3, "tenant": f"t{i % 3}", "ms": random.randrange(20)} for i in range(60)
        ]
        unkeyed = [{"seq": 1000 + i, "ms": 300} for i in range(12)]
        publish(broker, "tenants", [*keyed[:30], *unkeyed, *keyed[30:]])
        # When the worker ordered by the header handles them
        started = time.monotonic()
        async with running(topology, "tenants", broker.amqp_url) as counters:
            await eventually(lambda: len(order_workers.calls) >= 72, timeout=30, what="72 handled")
            elapsed = time.monotonic() - started
        calls = order_workers.calls
        # Then each tenant's steps kept their order
        for tenant in ("t0", "t1", "t2"):
            assert [seq for key, seq in calls if key == tenant] == list(range(20))
        # and the 12 without a key shared no line: they ran at once, not one by one (3.6 s)
        unkeyed_calls = [seq for key, seq in calls if key is None]
        print(f"12 unkeyed 300 ms steps beside 60 keyed ones: {elapsed:.2f}s in all")
        assert sorted(unkeyed_calls) == [1000 + i for i in range(12)]
        assert order_workers.peak[0] >= 12
        assert elapsed < 2.5, elapsed
        assert counters[0].processed == 72

    async def test_a_contract_without_the_field_runs_unordered(self, broker: Broker) -> None:
        # Given Notes (no `key` field) on the worker ordered by `key`
        topology = await topology_on(broker)
        publish(broker, "ordered", [{"seq": i} for i in range(20)], type="Note")
        # When it handles them, they are handled (no key: no line), none lost
        async with running(topology, "ordered", broker.amqp_url) as counters:
            await eventually(lambda: len(order_workers.calls) >= 20, timeout=30, what="20 notes")
        assert sorted(seq for _, seq in order_workers.calls) == list(range(20))
        assert counters[0].processed == 20

    async def test_a_rate_limit_keeps_each_keys_order(self, broker: Broker) -> None:
        """A delivery waits for its key before its rate-limit turn, so turns of unequal
        length cannot reorder a key."""
        topology = await topology_on(broker)
        steps = plan(keys=10, total=400, seed=4)
        publish(broker, "metered", [dict(s) for s in steps])
        async with running(topology, "metered", broker.amqp_url) as counters:
            await eventually(lambda: len(order_workers.calls) >= 400, timeout=30, what="400 done")
        assert violations(order_workers.calls) == 0
        assert (counters[0].processed, counters[0].duplicates) == (400, 0)
        assert counters[0].throttled > 300


class TestRetries:
    async def test_in_process_retries_hold_the_keys_later_messages_and_no_other_key(
        self, broker: Broker
    ) -> None:
        # Given key a's first step failing twice in process (80 ms backoff each), then
        # four more of a and five of b
        topology = await topology_on(broker)
        steps = [{"key": "a", "seq": 0, "fail_times": 2}]
        steps += [{"key": "a", "seq": i} for i in range(1, 5)]
        steps += [{"key": "b", "seq": i} for i in range(5)]
        publish(broker, "flaky", steps)
        # When the worker ordered by `key` handles them
        async with running(topology, "flaky", broker.amqp_url) as counters:
            await eventually(lambda: len(order_workers.calls) >= 10, timeout=30, what="10 done")
        calls = order_workers.calls
        # Then a's later steps waited for its first (3 attempts) and b did not wait
        assert [seq for key, seq in calls if key == "a"] == [0, 1, 2, 3, 4]
        assert order_workers.attempts[("a", 0)] == 3
        assert calls.index(("b", 4)) < calls.index(("a", 0))
        assert (counters[0].processed, counters[0].retried) == (10, 0)

    async def test_a_message_sent_to_a_retry_tier_is_overtaken_by_its_keys_later_ones(
        self, broker: Broker
    ) -> None:
        """The documented policy: order holds among deliveries in flight; a message that
        goes to a delay tier leaves its key's line, like any broker-level retry."""
        topology = await topology_on(broker)
        steps = [{"key": "a", "seq": 0, "fail_until_retried": True}]
        steps += [{"key": "a", "seq": i} for i in range(1, 4)]
        publish(broker, "flaky", steps)
        async with running(topology, "flaky", broker.amqp_url) as counters:
            await eventually(lambda: len(order_workers.calls) >= 4, timeout=30, what="4 done")
        # The later steps ran while the first waited 300 ms in its tier; it came back last
        assert order_workers.calls == [("a", 1), ("a", 2), ("a", 3), ("a", 0)]
        assert order_workers.attempts[("a", 0)] == 4  # 3 in process, 1 after the tier
        assert (counters[0].processed, counters[0].retried) == (4, 1)
        assert await queue_depth(broker.amqp_url, "flaky.retry.300ms") == 0


FAILOVER = """
exchanges: {steps: {}}
queues:
  durable:
    bind: [{exchange: steps}]
    arguments: {x-single-active-consumer: true}
workers:
  durable:
    module: tests.fixtures.order_workers
    queue: durable
    prefetch: 32
    concurrency: 8
    order_by: key
    replicas: 2
"""


async def stored(database: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database)
    try:
        return await connection.fetch("SELECT key, seq, pid FROM steps ORDER BY id")
    finally:
        await connection.close()


class TestAcrossProcesses:
    async def test_a_single_active_consumer_keeps_each_keys_order_over_a_sigkill_failover(
        self, broker: Broker, database: str, tmp_path: Path
    ) -> None:
        # Given two worker processes on a quorum queue with a single active consumer,
        # ordered by `key`, recording each step in the inbox's transaction
        path = tmp_path / "failover.yaml"
        path.write_text(FAILOVER)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        connection = await asyncpg.connect(database)
        await connection.execute(
            "CREATE TABLE steps (id bigserial PRIMARY KEY, key text NOT NULL,"
            " seq int NOT NULL, pid int NOT NULL)"
        )
        await connection.close()

        def process() -> WorkerProcess:
            return WorkerProcess(
                "durable",
                topology_file=path,
                url=broker.amqp_url,
                pythonpath=[ROOT],
                args=["--database-url", database],
            )

        steps = plan(keys=20, total=600, seed=18)
        for step in steps:
            step["ms"] = 10 + int(str(step["ms"])) * 3  # 10 to 34 ms
        active, standby = process().start(), process()
        try:
            standby.start()
            publish(broker, "steps", [dict(s) for s in steps])
            # When the active one is killed (SIGKILL) with work in flight
            await eventually(
                lambda: _count(database, 150), timeout=60, what="150 steps stored by the first"
            )
            active.kill()
            # Then the standby takes over and stores the rest
            rows = await eventually(
                lambda: _all_stored(database, 600), timeout=90, what="all 600 stored"
            )
            await eventually(lambda: settled(broker, "durable"), timeout=30, what="all acked")
        finally:
            active.stop()
            code = standby.stop()
        stopped = standby.events("worker.stopped")
        pids = Counter(row["pid"] for row in rows)
        print(
            f"failover: {pids[active.pid]} steps by the killed process, "
            f"{pids[standby.pid]} by the standby, duplicates removed by the inbox: "
            f"{stopped[0]['duplicates'] if stopped else '?'}"
        )
        # Each step stored exactly once, and each key's steps in publish order
        assert code == 0
        assert len(rows) == 600
        assert sorted((r["key"], r["seq"]) for r in rows) == sorted(
            (str(s["key"]), int(str(s["seq"]))) for s in steps
        )
        assert violations([(r["key"], r["seq"]) for r in rows]) == 0
        # Both processes did part of the work, the standby only after the first
        assert set(pids) == {active.pid, standby.pid}
        for key in {r["key"] for r in rows}:
            by = [r["pid"] for r in rows if r["key"] == key]
            assert by == sorted(by, key=lambda pid: pid == standby.pid), key
        assert await queue_depth(broker.amqp_url, "durable") == 0


async def _count(database: str, at_least: int) -> bool:
    return len(await stored(database)) >= at_least


async def _all_stored(database: str, total: int) -> list[asyncpg.Record] | None:
    rows = await stored(database)
    return rows if len(rows) >= total else None
