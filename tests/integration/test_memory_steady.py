"""A worker's memory stays flat in steady state: its RSS, read twice in one long
drain (once its dedupe window is full, and at the end), does not grow with the
messages processed. Without a database the inbox keeps 10,000 ids and the
follow-ons of its last 1,000 claims; before, it kept 100,000 ids with every
follow-on, and this test failed: the sink grew from 43.9 to 50.4 MiB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest

from contracts import encode
from tests.bench.payload import ORDER
from tests.conftest import Broker
from tests.integration.conftest import ROOT
from topology import load
from topology.apply import apply
from workers.testing import WorkerProcess, eventually, queue_depth

TOPOLOGY = """
exchanges:
  orders: {}
  inventory: {}
queues:
  work:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
  reserved:
    type: classic
    bind: [{exchange: inventory, routing_key: "#"}]
workers:
  sink: {module: tests.fixtures.steady_workers, queue: work}
  step: {module: tests.fixtures.steady_workers, queue: work, publish_to: inventory}
metrics: {port: 0}
"""
#: Growth allowed between the two readings: allocator slack, not a leak.
SLACK_MIB = 3.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def fill(url: str, count: int) -> None:
    """`count` OrderPlaced with distinct ids, confirmed, in the wire format."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("orders")
        body = encode(ORDER)
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            type="OrderPlaced",
                            message_id=f"m-{i}",
                            headers={"version": ORDER.__version__},
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key="order.placed",
                    )
                    for i in range(start, min(count, start + 1000))
                )
            )
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("worker", "total"),
    [
        ("sink", 40_000),
        ("step", 40_000),
        pytest.param("step", 300_000, marks=pytest.mark.slow, id="step-300k"),
    ],
)
async def test_rss_does_not_grow_with_messages_processed(
    broker: Broker, tmp_path: Path, worker: str, total: int
) -> None:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY)
    await apply(load(path), broker.amqp_url, management_url=broker.management_url)
    await fill(broker.amqp_url, total)
    process = WorkerProcess(worker, topology_file=path, url=broker.amqp_url, pythonpath=[ROOT])
    with process:
        # Once 15,000 are processed the 10,000-id window is full.
        mark = total - 15_000

        async def past_the_window() -> bool:
            return await queue_depth(broker.amqp_url, "work") <= mark

        await eventually(past_the_window, what="15,000 processed", timeout=120, interval=0.05)
        first = rss_mib(process.pid)

        async def drained() -> bool:
            return await queue_depth(broker.amqp_url, "work") == 0

        await eventually(drained, what="the queue drained", timeout=600, interval=0.2)
        await asyncio.sleep(0.5)  # the last acks
        last = rss_mib(process.pid)
    print(f"\n[memory {worker}] messages={total} rss_at_15k={first:.1f}MiB rss_end={last:.1f}MiB")
    assert last - first < SLACK_MIB, (
        f"RSS grew {last - first:.1f} MiB over {total - 15_000} messages"
    )
