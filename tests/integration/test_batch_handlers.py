"""Batch handlers in a real `fleet worker run` process: 500 messages in one call and one
transaction; a poison message fails its batch, which goes on message by message, so
the poison alone is parked with its reason and the others are stored; duplicates of a
batch's messages are skipped by the inbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.conftest import Broker
from tests.fixtures.batch_worker import SCHEMA
from tests.integration.conftest import ROOT, PikaPublisher, order
from topology import load
from topology.apply import apply
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, eventually, queue_depth

TOPOLOGY = """
exchanges:
  orders: {}
queues:
  rows:
    type: quorum
    bind: [{exchange: orders, routing_key: order.placed}]
    retry: {attempts: 2, backoff: 1ms, max_backoff: 5ms, delays: [100ms]}
workers:
  rows:
    module: tests.fixtures.batch_worker
    queue: rows
    prefetch: 1000
    concurrency: 8
"""


class Rows:
    """The test's topology and database, and what the worker stored."""

    def __init__(self, broker: Broker, database: str, path: Path):
        self.broker = broker
        self.database = database
        self.path = path

    def worker(self) -> WorkerProcess:
        return WorkerProcess(
            "rows",
            topology_file=self.path,
            url=self.broker.amqp_url,
            pythonpath=[ROOT],
            args=["--database-url", self.database],
        )

    async def fetch(self, query: str) -> list[Any]:
        connection = await asyncpg.connect(self.database)
        try:
            return [tuple(r) for r in await connection.fetch(query)]
        finally:
            await connection.close()

    async def stored(self) -> int:
        [(count,)] = await self.fetch("SELECT count(*) FROM batch_rows")
        return int(count)


@pytest.fixture
async def rows(broker: Broker, database: str, tmp_path: Path) -> Rows:
    path = tmp_path / "topology.yaml"
    path.write_text(TOPOLOGY)
    await apply(load(path), broker.amqp_url, management_url=broker.management_url)
    setup = Rows(broker, database, path)
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(SCHEMA)
    finally:
        await connection.close()
    return setup


def publish(publisher: PikaPublisher, ids: range, poison: int | None = None) -> None:
    for i in ids:
        customer = "poison" if i == poison else "c-1"
        publisher.publish(
            "orders", "order.placed", order(f"o-{i}", customer_id=customer), message_id=f"m-{i}"
        )


async def _equal(count: Callable[[], Awaitable[int]], expected: int) -> bool:
    found = await count()
    assert found <= expected, f"{found} rows, more than the {expected} expected"
    return found == expected


async def _depth_is(broker: Broker, queue: str, expected: int) -> bool:
    return await queue_depth(broker.amqp_url, queue) == expected


class TestBatches:
    async def test_1000_waiting_messages_are_stored_in_two_calls_of_500(
        self, rows: Rows, broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        # Given 1,000 messages waiting for a worker whose batch handler takes up to 500
        publish(pika_publisher, range(1000))
        # When it consumes them
        with rows.worker() as process:
            await eventually(lambda: _equal(rows.stored, 1000), what="1,000 rows", timeout=60)
            await eventually(
                lambda: _depth_is(broker, "rows", 0), what="the queue drained", timeout=30
            )
        # Then each row is stored once, in calls of 500, and every message was acked
        calls = await rows.fetch("SELECT size FROM batch_calls ORDER BY size DESC")
        print(f"\n[batch] calls={[c for (c,) in calls]}")
        assert await rows.stored() == 1000
        assert calls == [(500,), (500,)]
        [stopped] = process.events("worker.stopped")
        assert (stopped["processed"], stopped["dead_lettered"]) == (1000, 0)
        assert await queue_depth(broker.amqp_url, "rows.dead") == 0

    async def test_duplicates_of_a_batchs_messages_are_skipped(
        self, rows: Rows, broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        # Given 300 messages processed in a batch
        publish(pika_publisher, range(300))
        with rows.worker() as process:
            await eventually(lambda: _equal(rows.stored, 300), what="300 rows", timeout=60)
            # When 100 of them come again, with 50 new ones, in the next batch
            publish(pika_publisher, range(250, 400))
            await eventually(lambda: _equal(rows.stored, 400), what="400 rows", timeout=60)
            await eventually(
                lambda: _depth_is(broker, "rows", 0), what="the queue drained", timeout=30
            )
        # Then the handler saw the new ones only (a duplicate row would fail its batch)
        calls = await rows.fetch("SELECT sum(size), count(*) FROM batch_calls")
        [stopped] = process.events("worker.stopped")
        print(f"\n[batch duplicates] calls={calls} duplicates={stopped['duplicates']}")
        assert calls == [(400, calls[0][1])]
        assert (stopped["processed"], stopped["duplicates"]) == (450, 50)
        assert process.events("batch.failed") == []


ANSWERS = """
exchanges:
  orders: {}
  answers: {}
queues:
  answers-in:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
  answers:
    type: classic
    bind: [{exchange: answers, routing_key: "#"}]
workers:
  answers:
    module: tests.fixtures.batch_worker
    queue: answers-in
    publish_to: answers
    prefetch: 200
"""


class TestFollowOns:
    async def test_a_batchs_follow_ons_are_published_once_each_and_caused_by_their_batch(
        self, broker: Broker, tmp_path: Path, pika_publisher: PikaPublisher
    ) -> None:
        # Given 300 waiting messages for a batch handler (up to 100) that answers each
        path = tmp_path / "topology.yaml"
        path.write_text(ANSWERS)
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        for i in range(300):
            pika_publisher.publish(
                "orders", "order.placed", order(f"o-{i}"), message_id=f"m-{i}",
                correlation_id=f"saga-{i}",
            )  # fmt: skip
        # When a worker without a database (the memory inbox) takes them
        with WorkerProcess(
            "answers", topology_file=path, url=broker.amqp_url, pythonpath=[ROOT]
        ) as process:
            answers = await collect(broker.amqp_url, "answers", 300)
            await eventually(
                lambda: _depth_is(broker, "answers-in", 0), what="the queue drained", timeout=30
            )
        # Then every message was answered once, in calls of 100
        assert sorted(a.json()["order_id"] for a in answers) == sorted(f"o-{i}" for i in range(300))
        assert {a.json()["reason"] for a in answers} == {"batch of 100"}
        assert len({a.message_id for a in answers}) == 300
        # each answer caused by its batch (3 of them), in the saga of the batch's first message
        causes = {a.headers[h.CAUSATION_ID] for a in answers}
        assert len(causes) == 3
        assert all(c.startswith("batch-") for c in causes)
        assert len({a.correlation_id for a in answers}) == 3
        [stopped] = process.events("worker.stopped")
        assert (stopped["processed"], stopped["dead_lettered"]) == (300, 0)


class TestPoison:
    async def test_one_poison_in_a_batch_of_500_is_parked_alone_and_499_are_stored(
        self, rows: Rows, broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        # Given 500 waiting messages, one of which the table refuses
        publish(pika_publisher, range(500), poison=137)
        # When the worker takes them in one batch
        with rows.worker() as process:
            await eventually(lambda: _equal(rows.stored, 499), what="499 rows", timeout=120)
            parked = await collect(broker.amqp_url, "rows.dead", 1)
            await eventually(
                lambda: _depth_is(broker, "rows", 0), what="the queue drained", timeout=30
            )
        # Then the batch failed whole, and went on message by message:
        [failed] = process.events("batch.failed")
        assert failed["size"] == 500
        assert "CheckViolationError" in failed["error"]
        # the 499 others stored, each once (one-element calls after the failure)
        assert await rows.stored() == 499
        [(calls, stored)] = await rows.fetch("SELECT count(*), sum(size) FROM batch_calls")
        assert (calls, stored) == (499, 499)
        # and the poison alone parked, with its reason: nothing lost
        [dead] = parked
        assert dead.message_id == "m-137"
        assert dead.headers[h.REASON] == "permanent"
        assert dead.headers[h.ERROR_TYPE] == "CheckViolationError"
        assert "batch_rows_customer_id_check" in dead.headers[h.ERROR_MESSAGE]
        [stopped] = process.events("worker.stopped")
        print(
            f"\n[batch poison] published=500 stored={await rows.stored()} "
            f"parked={len(parked)} processed={stopped['processed']}"
        )
        assert (stopped["processed"], stopped["dead_lettered"]) == (499, 1)
        assert await queue_depth(broker.amqp_url, "rows.dead") == 0  # collected above
