"""Chaos on a 3-node cluster: nodes stop, die and come back while 20,000 orders
flow from a confirming publisher through two worker processes.

Every confirmed message must be processed, each effect applied once, nothing
left in a dead-letter or retry queue; the failover times of the workers and of
the publisher are printed with the other figures. Slow (a cluster start, and
20,000 messages per scenario): `pytest -m slow tests/integration/test_cluster_chaos.py -s`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from tests.fixtures.ledger_worker import SCHEMA
from tests.integration.cluster import Cluster, ClusterUnavailable
from tests.integration.conftest import ROOT, order
from topology import load
from topology.apply import apply
from workers.runtime.link import BrokerDown, BrokerLink
from workers.runtime.nodes import node_label
from workers.runtime.outgoing import Outgoing
from workers.testing import WorkerProcess, queue_depth

pytestmark = pytest.mark.slow

TOTAL = 20_000
#: Publishes awaiting their confirm at once.
WINDOW = 200

TOPOLOGY = """
broker:
  urls: [{urls}]
  quorum_replicas: 3
exchanges:
  orders: {{}}
queues:
  ledger:
    bind: [{{exchange: orders, routing_key: order.placed}}]
    retry: {{attempts: 3, backoff: 1ms, max_backoff: 10ms, delays: [100ms, 1s]}}
workers:
  ledger:
    module: tests.fixtures.ledger_worker
    queue: ledger
    prefetch: 100
    concurrency: 20
"""


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Three nodes for the whole session, stopped (and their files removed) after it."""
    try:
        running = Cluster.start(3)
    except ClusterUnavailable as exc:
        pytest.skip(f"cannot start a RabbitMQ cluster here: {exc}")
    yield running
    running.stop()


@dataclass
class Run:
    """One scenario: the vhost on the cluster, the workers, the publisher and what happened."""

    cluster: Cluster
    vhost: str
    database: str
    path: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    link: BrokerLink | None = None
    confirmed: set[str] = field(default_factory=set)
    unconfirmed: dict[str, str] = field(default_factory=dict)
    progress: dict[int, asyncio.Event] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    def reached(self, share: float) -> asyncio.Event:
        """Set once `share` of the messages are confirmed."""
        threshold = int(TOTAL * share)
        event = self.progress.setdefault(threshold, asyncio.Event())
        if len(self.confirmed) >= threshold:
            event.set()
        return event

    def node_of_worker(self, index: int) -> int:
        lines = self.workers[index].events("worker.consuming")
        return self.cluster.node_of(lines[-1]["node"])

    def node_of_publisher(self) -> int:
        assert self.link is not None
        label = node_label(self.link.nodes.current)
        assert label is not None, "the publisher is not connected"
        return self.cluster.node_of(label)

    async def act(self, *args: str) -> None:
        started = time.monotonic()
        await self.cluster.run(*args)
        self.actions.append(f"{' '.join(args)} ({time.monotonic() - started:.1f}s)")

    async def await_failover(self, worker: int, count: int) -> None:
        """Wait until worker `worker` has logged `count` failovers."""
        while len(self.workers[worker].events("broker.failover")) < count:  # noqa: ASYNC110 (a log line, not an event)
            await asyncio.sleep(0.1)

    async def await_replicas(self) -> None:
        """Wait until every replica of the work queue is online (before the next stop)."""
        while True:
            with self.cluster.api() as api:
                queue = api.get(f"/api/queues/{quote(self.vhost, safe='')}/ledger").json()
            if len(queue.get("online", [])) == self.cluster.size:
                return
            await asyncio.sleep(0.2)


@pytest.fixture
def run(cluster: Cluster, database: str, tmp_path: Path) -> Iterator[Run]:
    vhost = f"chaos-{uuid.uuid4().hex[:8]}"
    cluster.add_vhost(vhost)
    path = tmp_path / "topology.yaml"
    urls = ", ".join(cluster.amqp_url(node, vhost) for node in range(1, cluster.size + 1))
    path.write_text(TOPOLOGY.format(urls=urls))
    yield Run(cluster, vhost, database, path)
    cluster.delete_vhost(vhost)


# -- the scenarios: what happens to the cluster while the messages flow ----------


async def stop_a_workers_node_then_start_it(run: Run) -> None:
    await run.reached(0.25).wait()
    node = run.node_of_worker(0)
    await run.act("stop-node", str(node))
    await run.await_failover(0, 1)
    await run.act("start-node", str(node))


async def kill_the_publishers_node_then_start_it(run: Run) -> None:
    await run.reached(0.25).wait()
    node = run.node_of_publisher()
    await run.act("kill-node", str(node))
    await run.act("start-node", str(node))


async def stop_two_nodes_in_turn(run: Run) -> None:
    await run.reached(0.2).wait()
    first = run.node_of_worker(0)
    await run.act("stop-node", str(first))
    await run.await_failover(0, 1)
    await run.act("start-node", str(first))
    await run.await_replicas()
    await run.reached(0.6).wait()
    second = run.node_of_worker(1)
    if second == first:  # never the same node twice: the point is two different ones
        second = first % run.cluster.size + 1
    await run.act("stop-node", str(second))
    await run.act("start-node", str(second))


SCENARIOS: dict[str, Callable[[Run], Coroutine[None, None, None]]] = {
    "stop-and-start": stop_a_workers_node_then_start_it,
    "kill-9": kill_the_publishers_node_then_start_it,
    "two-nodes-in-turn": stop_two_nodes_in_turn,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_losing_nodes_loses_no_confirmed_message(run: Run, scenario: str) -> None:
    """Every confirmed order is booked exactly once, nothing is parked, whatever the nodes do."""
    # Given the topology on the cluster, the ledger schema, two workers on different nodes
    await apply(
        load(run.path),
        run.cluster.amqp_url(1, run.vhost),
        management_url=run.cluster.management_url(1),
    )
    await _sql(run.database, SCHEMA)
    for first in (1, 2):
        worker = WorkerProcess(
            "ledger",
            topology_file=run.path,
            url=run.cluster.urls(run.vhost, first=first),
            pythonpath=[ROOT],
            args=["--database-url", run.database],
        )
        run.workers.append(worker.start(timeout=60))
    started = time.monotonic()
    try:
        # When 20,000 orders are published with confirms while the scenario runs
        chaos = asyncio.create_task(SCENARIOS[scenario](run))
        await _publish_all(run)
        published = time.monotonic() - started
        await asyncio.wait_for(chaos, 300)
        booked = await _wait_for_bookings(run.database, len(run.confirmed), seconds=600)
        drained = time.monotonic() - started
        # Copies of publishes sent again are still queued: let the workers skip them.
        await _wait_for_empty(run, "ledger", seconds=120)
    finally:
        for worker in run.workers:
            worker.stop()
    # Then every confirmed order was booked, once, and nothing was parked or left waiting
    rows, distinct, ids = await _bookings(run.database)
    parked = await _depths(run, ["ledger.dead", "ledger.retry.100ms", "ledger.retry.1s", "ledger"])
    assert run.link is not None
    worker_failovers = [
        line["seconds"] for w in run.workers for line in w.events("broker.failover")
    ]
    _report(
        scenario,
        run,
        published=published,
        drained=drained,
        booked=booked,
        rows=rows,
        worker_failovers=worker_failovers,
        parked=parked,
        pause=await _longest_pause(run.database),
    )
    assert run.unconfirmed == {}, "a node was always up: every publish should be confirmed"
    assert len(run.confirmed) == TOTAL
    assert ids == run.confirmed, "a confirmed order was never booked"
    assert rows == distinct, f"{rows - distinct} order(s) booked twice"
    assert parked == {"ledger.dead": 0, "ledger.retry.100ms": 0, "ledger.retry.1s": 0, "ledger": 0}
    assert worker_failovers, "no worker lost its node: the scenario tested nothing"


async def _publish_all(run: Run) -> None:
    """Publish TOTAL orders through a failing-over link, WINDOW confirms in flight."""
    link = BrokerLink(
        run.cluster.urls(run.vhost, first=1), name="chaos publisher", failover_timeout=120
    )
    run.link = link
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    window = asyncio.Semaphore(WINDOW)

    async def publish(i: int) -> None:
        message_id = f"m-{i}"
        try:
            await link.publish(_order(i))
            run.confirmed.add(message_id)
        except BrokerDown as exc:
            run.unconfirmed[message_id] = str(exc)
        finally:
            window.release()
        for threshold, event in run.progress.items():
            if len(run.confirmed) >= threshold:
                event.set()

    tasks = []
    for i in range(TOTAL):
        await window.acquire()
        tasks.append(asyncio.create_task(publish(i)))
    await asyncio.gather(*tasks)
    for event in run.progress.values():
        event.set()  # a scenario waiting for a share that was skipped must not hang
    stop.set()
    await keeper


def _order(i: int) -> Outgoing:
    return Outgoing(
        exchange="orders",
        routing_key="order.placed",
        body=json.dumps(order(f"o-{i}")).encode(),
        message_id=f"m-{i}",
        correlation_id=f"m-{i}",
        causation_id=None,
        type="OrderPlaced",
        version=1,
        mandatory=True,
        timestamp=datetime.now(UTC),
    )


async def _sql(database: str, statement: str) -> None:
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _bookings(database: str) -> tuple[int, int, set[str]]:
    """(rows, distinct message ids, the ids) in the ledger's effects table."""
    connection = await asyncpg.connect(database)
    try:
        records = await connection.fetch("SELECT message_id FROM effects")
    finally:
        await connection.close()
    ids = {r["message_id"] for r in records}
    return len(records), len(ids), ids


async def _longest_pause(database: str) -> float:
    """The longest time between two consecutive bookings: how long processing stalled."""
    connection = await asyncpg.connect(database)
    try:
        gap = await connection.fetchval(
            "SELECT max(gap) FROM (SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY at))"
            " AS gap FROM effects) AS gaps"
        )
    finally:
        await connection.close()
    return float(gap or 0)


async def _wait_for_bookings(database: str, expected: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while True:
        _, distinct, _ = await _bookings(database)
        if distinct >= expected or time.monotonic() > deadline:
            return distinct
        await asyncio.sleep(0.5)


async def _wait_for_empty(run: Run, queue: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if not (await _depths(run, [queue]))[queue] or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


async def _depths(run: Run, queues: list[str]) -> dict[str, int]:
    """Ready messages per queue, exactly (a passive declare; the management API's
    figures lag by seconds)."""
    url = run.cluster.amqp_url(1, run.vhost)
    return {name: await queue_depth(url, name) for name in queues}


def _report(
    scenario: str,
    run: Run,
    *,
    published: float,
    drained: float,
    booked: int,
    rows: int,
    worker_failovers: list[float],
    parked: dict[str, int],
    pause: float,
) -> None:
    assert run.link is not None
    duplicates = sum(
        line.get("duplicates", 0) for w in run.workers for line in w.events("worker.stopped")
    )
    print(
        f"\n[chaos {scenario}] actions: {'; '.join(run.actions)}\n"
        f"  published {TOTAL} in {published:.1f}s ({TOTAL / published:.0f}/s), "
        f"confirmed {len(run.confirmed)}, unconfirmed {len(run.unconfirmed)}, "
        f"sent again {run.link.resent}\n"
        f"  booked {booked} distinct ({rows} rows) after {drained:.1f}s; "
        f"duplicates suppressed {duplicates}; parked/left {parked}\n"
        f"  worker failovers, lost to consuming again (s): {_spread(worker_failovers)}\n"
        f"  publisher failovers, lost to connected again (s): {_spread(run.link.failovers)}\n"
        f"  publisher stalls, lost to the next confirm (s): {_spread(run.link.stalls)}\n"
        f"  longest pause between two bookings (s): {pause:.2f}"
    )


def _spread(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    values = ", ".join(f"{s:.2f}" for s in seconds)
    median, longest = statistics.median(seconds), max(seconds)
    return f"n={len(seconds)} median {median:.2f} max {longest:.2f} [{values}]"
