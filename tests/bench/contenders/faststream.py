"""A FastStream 0.7 RabbitMQ subscriber with a pydantic model: the closest framework.

Configured in its favour: per-message access logging is off (`logger=None`),
it runs on uvloop as `faststream run` does when uvloop is installed, and it
declares nothing (the queue and exchange exist). Acks follow FastStream's
default policy (after the handler returns). The saga step is a
`@broker.publisher` on the subscriber: the handler's return value is
published persistent and mandatory on a confirm-mode channel, then the
delivery is acked.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from pydantic import BaseModel, Field

from tests.bench import layout
from tests.bench.child import Signals, run_loop
from tests.bench.probe import Probe, now
from tests.bench.protocol import Job, Outcome


class OrderLine(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    qty: Annotated[int, Field(ge=1, le=10_000)]
    unit_price_cents: Annotated[int, Field(ge=0)]


class OrderPlaced(BaseModel):
    order_id: str
    customer_id: str
    lines: Annotated[list[OrderLine], Field(min_length=1)]
    total_cents: Annotated[int, Field(ge=0)]
    currency: Annotated[str, Field(pattern="^[A-Z]{3}$")] = "EUR"


class StockReserved(BaseModel):
    order_id: str
    customer_id: str
    reservation_id: str
    lines: list[OrderLine]
    total_cents: int
    currency: str = "EUR"


def run(job: Job, signals: Signals) -> Outcome:
    if job.role not in ("drain", "saga"):
        raise SystemExit(f"the FastStream contender has no {job.role!r} role")
    signals.ready()
    return run_loop("uvloop", _consume(job, signals))


async def _consume(job: Job, signals: Signals) -> Outcome:
    probe = Probe(job.expected, warmup=job.warmup_messages)
    done = asyncio.Event()
    probe.on_done = done.set
    broker = RabbitBroker(
        job.url, default_channel=Channel(prefetch_count=job.prefetch), logger=None
    )
    subscriber = broker.subscriber(RabbitQueue(job.queue, declare=False))
    if job.role == "saga":
        publisher = broker.publisher(
            exchange=RabbitExchange(layout.INVENTORY, type=ExchangeType.TOPIC, declare=False),
            routing_key="stock.reserved",
            mandatory=True,
            persist=True,
            message_type="StockReserved",
            headers={"version": 1},
        )

        @publisher
        @subscriber
        async def reserve(order: OrderPlaced) -> StockReserved:
            probe.tick()
            return StockReserved(
                order_id=order.order_id,
                customer_id=order.customer_id,
                reservation_id="res-" + order.order_id,
                lines=order.lines,
                total_cents=order.total_cents,
                currency=order.currency,
            )

    else:

        @subscriber
        async def do_nothing(order: OrderPlaced) -> None:
            probe.tick()

    async with broker:
        await broker.start()
        signals.consuming()
        await done.wait()
        await subscriber.stop()
        end = now()
    return probe.outcome(*end)
