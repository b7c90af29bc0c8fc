"""The web shop places orders through the outbox into the reference saga, end to end:
real PostgreSQL, RabbitMQ, worker processes and the relay; the shop never touches
the broker, and each order it commits ends its saga as its kind says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
from aiohttp.test_utils import TestServer
from fulfilment.shop import make_app

from tests.integration.reference import WORKERS, Fleet, Order, assert_expected, fleet
from tests.integration.test_outbox import relaying

__all__ = ["fleet"]  # the fixture, imported for pytest


@contextlib.asynccontextmanager
async def shop(database: str) -> AsyncIterator[httpx.AsyncClient]:
    server = TestServer(make_app(database))
    await server.start_server()
    try:
        async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10) as http:
            yield http
    finally:
        await server.close()


BASKETS = [
    ("c-1", [{"sku": "apple", "qty": 2, "unit_price_cents": 120}], "confirmed"),
    ("c-2", [{"sku": "pear", "qty": 1, "unit_price_cents": 90}], "confirmed"),
    ("c-3-decline", [{"sku": "apple", "qty": 1, "unit_price_cents": 120}], "payment-declined"),
    ("c-4", [{"sku": "quince", "qty": 1, "unit_price_cents": 300}], "out-of-stock"),
] * 5


async def test_orders_placed_in_the_shop_end_their_sagas(
    fleet: Callable[..., Awaitable[Fleet]], database: str
) -> None:
    setup: Fleet = await fleet()
    setup.start(*WORKERS)
    async with shop(database) as http, relaying(database, setup.broker.amqp_url) as relay:
        answers = await asyncio.gather(
            *(
                http.post("/orders", json={"customer_id": customer, "lines": lines})
                for customer, lines, _ in BASKETS
            )
        )
        assert [a.status_code for a in answers] == [201] * len(BASKETS), answers[0].text
        orders = [
            Order(a.json()["order_id"], customer, lines, expect)
            for a, (customer, lines, expect) in zip(answers, BASKETS, strict=True)
        ]
        counts = await setup.wait_finished(orders, seconds=60)
        published = relay.stats.published
        shown = await http.get(f"/orders/{orders[0].order_id}")
    assert counts.get("pending", 0) == 0, counts
    assert_expected(orders, await setup.outcomes(orders))
    assert published == len(BASKETS)
    assert await setup.problems() == []
    assert shown.status_code == 200, shown.text
    assert shown.json()["customer_id"] == "c-1"
    assert shown.json()["total_cents"] == 240


async def test_a_basket_the_contract_refuses_writes_nothing(database: str) -> None:
    async with shop(database) as http:
        too_big = await http.post(
            "/orders",
            json={
                "customer_id": "c-1",
                "lines": [{"sku": "a", "qty": 10_000, "unit_price_cents": 10**15}],
            },
        )
        not_json = await http.post(
            "/orders", content=b"{", headers={"Content-Type": "application/json"}
        )
        unknown = await http.post("/orders", json={"customer_id": "c-1", "lines": [], "x": 1})
    assert too_big.status_code == 400, too_big.text
    assert too_big.json()["path"] == "total_cents"
    assert not_json.status_code == 400
    assert unknown.status_code == 400
    connection = await asyncpg.connect(database)
    try:
        assert await connection.fetchval("SELECT count(*) FROM shop_orders") == 0
        assert await connection.fetchval("SELECT count(*) FROM fleet_outbox") == 0
    finally:
        await connection.close()
