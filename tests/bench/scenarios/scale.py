"""scale: one quorum queue drained by 1, 2 and 4 `fleet worker run` processes,
on one node and on a cluster (issue 8).

Each measurement starts N real worker processes on the empty queue, waits
until every one consumes, freezes them (SIGSTOP), fills the queue, and lets
them go at once (SIGCONT): no process gets a head start. The rate is the
queue's own: messages taken between the moments its ready depth passes 90%
and 10% of what waited beyond the processes' prefetch, over the time between
(passive declares every 20 ms), so start-up and the last stragglers are
outside it. The queue must hold more than 4 x 256 messages (it does in both
sizes). Afterwards the processes stop
gracefully and must together have processed every message.

The cluster rows run when `--cluster-url` names the nodes (every node's AMQP
URL, comma-separated, e.g. from `scripts/cluster urls`); the workers get all of
them and connect to the first that answers, so every process talks to node 1,
which also leads the queue: the replication to the other nodes is what costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench.bench import Bench
from tests.bench.broker import Management, Queues, vhost_url
from tests.bench.process import ChildFailed
from tests.bench.results import Series
from tests.bench.scenarios.collect import Collector
from workers.testing import WorkerProcess

NAME_NODE = "scale, one node"
NAME_CLUSTER = "scale, cluster"
PROCESSES = (1, 2, 4)
QUEUE = "bench-scale"
#: Seconds between depth polls while the workers drain.
POLL_SECONDS = 0.02
PREFETCH = 256

TOPOLOGY = f"""
version: 1
exchanges: {{orders: {{type: topic}}}}
queues:
  {QUEUE}: {{type: quorum, retry: {{attempts: 1, delays: [5s]}}}}
workers:
  drain:
    module: tests.bench.contenders.fleet_workers
    queue: {QUEUE}
    prefetch: {PREFETCH}
    concurrency: {PREFETCH}
"""


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="msg/s", higher_is_better=True, baseline=_label(1))
    with tempfile.TemporaryDirectory(prefix="fleet-bench-scale-") as folder:
        path = Path(folder) / "scale.yaml"
        path.write_text(TOPOLOGY)
        await _apply(path, bench.url, bench.config.management_url)
        targets = [(NAME_NODE, bench.url, bench.url)]
        cluster = bench.config.cluster_url
        vhost = None
        if cluster:
            management = bench.config.cluster_management_url or _management_of(cluster)
            with Management(management) as api:
                vhost = api.create_vhost("fleet-bench-scale", urlsplit(cluster).username or "guest")
            nodes = ",".join(vhost_url(node, vhost) for node in cluster.split(","))
            first = nodes.split(",")[0]
            await _apply(path, first, management)
            targets.append((NAME_CLUSTER, nodes, first))
        try:
            for number in range(1, bench.config.rounds + 1):
                for scenario, urls, first in targets:
                    queues = await Queues.open(first)
                    try:
                        for count in PROCESSES:
                            bench.progress(
                                f"{scenario} · round {number}/{bench.config.rounds} · "
                                f"{count} process(es) …"
                            )
                            rate = await collector.attempt(
                                scenario,
                                _label(count),
                                _measure(bench, queues, path, urls, count),
                            )
                            if rate is not None:
                                collector.add(scenario, _label(count), rate)
                                bench.progress(f"{scenario} · {_label(count)}: {rate:,.0f} msg/s")
                    finally:
                        await queues.close()
        finally:
            if vhost is not None:
                with Management(management) as api:
                    api.delete_vhost(vhost)
    if not cluster:
        bench.progress("scale, cluster: skipped (no --cluster-url)")
    return collector.series


async def _measure(bench: Bench, queues: Queues, path: Path, urls: str, count: int) -> float:
    """N worker processes drain a filled queue together; the queue's rate in msg/s."""
    total = bench.config.sizes.scale
    await queues.purge(QUEUE)
    workers = [
        WorkerProcess("drain", topology_file=path, url=urls, args=["--prefetch", str(PREFETCH)])
        for _ in range(count)
    ]
    try:
        for worker in workers:
            await asyncio.to_thread(worker.start, 60)
        for worker in workers:
            os.kill(worker.pid, signal.SIGSTOP)
        await queues.fill(QUEUE, total, tag=bench.tag(), wait=False)
        # The broker still hands each frozen process its prefetch; the rest waits.
        ready = total - PREFETCH * count
        await _settle(queues, ready)
        for worker in workers:
            os.kill(worker.pid, signal.SIGCONT)
        rate = await _rate(queues, ready, seconds=bench.timeout(total))
        await _settle(queues, 0)  # the rest, before the processes are told to stop
    finally:
        for worker in workers:
            with contextlib.suppress(AssertionError, ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)  # a frozen process cannot stop
            await asyncio.to_thread(worker.stop)
    processed = sum(
        line.get("processed", 0) for w in workers for line in w.events("worker.stopped")
    )
    left = await queues.depth(QUEUE)
    if processed < total or left:
        raise ChildFailed(
            f"{count} process(es) processed {processed} of {total}; {left} left in the queue"
        )
    return rate


async def _settle(queues: Queues, ready: int) -> None:
    """Wait until the queue holds `ready` messages ready for delivery."""
    deadline = time.monotonic() + 60
    while (depth := await queues.depth(QUEUE)) != ready:
        if time.monotonic() > deadline:
            raise TimeoutError(f"queue {QUEUE!r} holds {depth} ready messages, not {ready}")
        await asyncio.sleep(POLL_SECONDS)


async def _rate(queues: Queues, total: int, *, seconds: float) -> float:
    """Messages taken between 90% and 10% of `total` ready, per second."""
    high, low = total * 0.9, total * 0.1
    started = time.monotonic()
    passed_high: float | None = None
    while True:
        depth = await queues.depth(QUEUE)
        now = time.monotonic()
        if passed_high is None and depth <= high:
            passed_high = now
        if depth <= low:
            assert passed_high is not None
            return (high - low) / max(now - passed_high, POLL_SECONDS)
        if now - started > seconds:
            raise TimeoutError(f"{depth} of {total} messages still ready after {seconds:.0f}s")
        await asyncio.sleep(POLL_SECONDS)


async def _apply(path: Path, url: str, management_url: str) -> None:
    from topology import load
    from topology.apply import apply

    await apply(load(path), url, management_url=management_url)


def _management_of(cluster_url: str) -> str:
    """The first node's management API: its AMQP port + 10000 (scripts/cluster's layout)."""
    parts = urlsplit(cluster_url.split(",")[0])
    port = (parts.port or 5672) + 10000
    return f"http://{parts.username or 'guest'}:{parts.password or 'guest'}@{parts.hostname}:{port}"


def _label(count: int) -> str:
    return f"fleet, {count} process{'es' if count > 1 else ''}"
