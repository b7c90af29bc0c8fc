"""The web shop: a producer outside the fleet that places orders through the outbox.

It is the system that starts the saga. It writes its own `shop_orders` row and
records the `OrderPlaced` event in the same PostgreSQL transaction
(`workers.outbox.Outbox`), so the order exists and is announced, or neither;
the relay (`fleet outbox run`) publishes it, confirmed, into the reference
fleet, and the shop never talks to the broker itself.

    POST /orders        {"customer_id": "c-1", "lines": [{"sku": "apple", "qty": 2,
                         "unit_price_cents": 120}]}  →  201 {"order_id", "message_id"}
    GET  /orders/{id}   the shop's own row

Run it with `fleet shop run` (its database: FLEET_DATABASE_URL, the outbox's).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import msgspec
from aiohttp import web

from contracts import InvalidPayload, decode
from contracts.types import Identifier
from fulfilment.contracts import OrderLine, OrderPlaced
from fulfilment.contracts.orders import MAX_LINES
from workers.outbox import Outbox
from workers.outbox.schema import install as install_outbox

SCHEMA = """
CREATE TABLE IF NOT EXISTS shop_orders (
    order_id    text        PRIMARY KEY,
    customer_id text        NOT NULL,
    total_cents bigint      NOT NULL,
    lines       jsonb       NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
"""
INSERT = """
INSERT INTO shop_orders (order_id, customer_id, total_cents, lines)
VALUES ($1, $2, $3, $4::jsonb)
"""

#: The events go to the reference fleet's `orders` exchange.
outbox = Outbox(exchange="orders", app_id="web-shop")

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("pool", asyncpg.Pool)


class Basket(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the shop's checkout posts."""

    customer_id: Identifier
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=MAX_LINES)]


async def place(request: web.Request) -> web.Response:
    """Write the order and record its OrderPlaced in one transaction; 201 once committed."""
    try:
        basket = msgspec.json.decode(await request.read(), type=Basket)
    except (msgspec.DecodeError, RecursionError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    order_id = f"shop-{uuid.uuid4().hex[:16]}"
    total = sum(line.qty * line.unit_price_cents for line in basket.lines)
    try:
        event = decode(
            OrderPlaced,
            msgspec.json.encode(
                {
                    "order_id": order_id,
                    "customer_id": basket.customer_id,
                    "lines": basket.lines,
                    "total_cents": total,
                    "source": "web",
                }
            ),
        )
    except InvalidPayload as exc:  # a total past the contract's bound, say
        return web.json_response({"error": exc.detail, "path": exc.path}, status=400)
    pool = request.app[POOL]
    async with pool.acquire() as connection:
        # One statement writes the order and its event's row: both commit, or
        # neither; then the relay is woken.
        message = await outbox.execute(
            connection,
            INSERT,
            order_id,
            basket.customer_id,
            total,
            msgspec.json.encode(basket.lines).decode(),
            event=event,
            key=order_id,
            message_id=f"{order_id}-placed",
            correlation_id=order_id,
        )
    return web.json_response({"order_id": order_id, "message_id": message.message_id}, status=201)


async def show(request: web.Request) -> web.Response:
    row = await request.app[POOL].fetchrow(
        "SELECT order_id, customer_id, total_cents, placed_at FROM shop_orders WHERE order_id = $1",
        request.match_info["order_id"],
    )
    if row is None:
        return web.json_response({"error": "no such order"}, status=404)
    return web.json_response({**dict(row), "placed_at": row["placed_at"].isoformat()})


def make_app(database_url: str) -> web.Application:
    """The shop, its pool opened (and its tables created) on startup."""
    app = web.Application()

    async def pool(app: web.Application) -> AsyncIterator[None]:
        app[POOL] = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        async with app[POOL].acquire() as connection:
            await connection.execute(SCHEMA)
            await install_outbox(connection)
        # The relay's wake-ups go from a connection of the outbox's own: a checkout
        # waits for its commit, not for a NOTIFY after it.
        async with outbox.waking(database_url):
            yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/orders", place)
    app.router.add_get("/orders/{order_id}", show)
    return app
