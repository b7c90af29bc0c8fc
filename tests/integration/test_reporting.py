"""The reference fleet's `reporting` worker: a daily-sales projection in PostgreSQL
built from the `order-events` stream by a real `fleet worker run reporting`, and
rebuilt, after its tables are dropped, by a new consumer name reading the stream
from the first offset: the same numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import yaml
from fulfilment.workers.reporting import daily_sales, drop_projection

from tests.conftest import Broker
from tests.integration.conftest import ROOT
from tests.integration.reference import topology_for_tests
from topology import load
from topology.apply import apply
from workers.testing import WorkerProcess, eventually

ORDERS = 30


def events() -> list[tuple[str, str, dict[str, Any]]]:
    """ORDERS orders placed; every third cancelled, the others confirmed (one twice:
    a duplicate confirmation counts once)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(ORDERS):
        qty = 1 + i % 4
        found.append(
            (
                "OrderPlaced",
                "order.placed",
                {
                    "order_id": f"o-{i}",
                    "customer_id": f"c-{i % 7}",
                    "lines": [{"sku": "apple", "qty": qty, "unit_price_cents": 250}],
                    "total_cents": qty * 250,
                    "currency": "EUR" if i % 5 else "GBP",
                    "source": "web",
                },
            )
        )
    for i in range(ORDERS):
        if i % 3 == 0:
            found.append(
                ("OrderCancelled", "order.cancelled", {"order_id": f"o-{i}", "reason": "x"})
            )
        else:
            found.append(
                ("OrderConfirmed", "order.confirmed", {"order_id": f"o-{i}", "shipment_id": "s"})
            )
    found.append(("OrderConfirmed", "order.confirmed", {"order_id": "o-1", "shipment_id": "s"}))
    return found


def expected() -> dict[str, tuple[int, int]]:
    """Currency → (orders confirmed, revenue)."""
    totals: dict[str, tuple[int, int]] = {}
    for i in range(ORDERS):
        if i % 3 == 0:
            continue
        currency = "EUR" if i % 5 else "GBP"
        count, revenue = totals.get(currency, (0, 0))
        totals[currency] = (count + 1, revenue + (1 + i % 4) * 250)
    return totals


async def publish(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("orders")
        for i, (event_type, key, body) in enumerate(events()):
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    type=event_type,
                    message_id=f"e-{i}",
                    headers={"version": 2} if event_type == "OrderPlaced" else {},
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=key,
            )


def reporting(broker: Broker, path: Path, database: str) -> WorkerProcess:
    process = WorkerProcess(
        "reporting",
        topology_file=path,
        url=broker.amqp_url,
        pythonpath=[ROOT / "examples" / "fulfilment"],
        args=["--database-url", database],
    )
    process.ready_event = "stream.consuming"
    return process


async def sales(database: str) -> list[tuple[Any, str, int, int]] | None:
    """The projection once every confirmation counted (None before, or without tables)."""
    connection = await asyncpg.connect(database)
    try:
        if not await connection.fetchval("SELECT to_regclass('reporting_daily_sales') IS NOT NULL"):
            return None
        found = await daily_sales(connection)
    finally:
        await connection.close()
    confirmed = sum(orders for _, _, orders, _ in found)
    return found if confirmed == sum(n for n, _ in expected().values()) else None


class TestReporting:
    async def test_the_projection_rebuilt_from_the_first_offset_has_the_same_numbers(
        self, tmp_path: Path, broker: Broker, database: str
    ) -> None:
        """Given the order events in the stream, the projection counts each confirmed
        order once; dropped and rebuilt by a fresh consumer reading from `first`, it
        holds the same rows."""
        spec = yaml.safe_load(topology_for_tests("2s"))
        path = tmp_path / "fleet.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        await publish(broker.amqp_url)
        with reporting(broker, path, database):
            built = await eventually(lambda: sales(database), what="every sale counted")
        connection = await asyncpg.connect(database)
        try:
            await drop_projection(connection)
        finally:
            await connection.close()
        spec["workers"]["reporting"]["consumer"] = "reporting-rebuild"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        with reporting(broker, path, database) as rebuild:
            rebuilt = await eventually(lambda: sales(database), what="every sale counted again")
        print(f"daily sales: {built}")
        assert rebuilt == built
        by_currency: dict[str, tuple[int, int]] = {}
        for _, currency, n, revenue in built:  # one day, or two across midnight
            count, total = by_currency.get(currency, (0, 0))
            by_currency[currency] = (count + n, total + revenue)
        assert by_currency == expected()
        [consuming] = rebuild.events("stream.consuming")
        assert (consuming["consumer"], consuming["start"]) == ("reporting-rebuild", "from first")
