"""`fleet demo`: orders for the reference fleet, a mix that exercises every path.

    orders = demo_orders(200, run="k3x9")          # deterministic for a run id and seed
    await publish_orders(url, orders)             # confirmed, mandatory, like any client

The mix, by the words the stand-ins read in customer ids (see fulfilment.standins):

    ~8%  a quince, never in stock              → cancelled (out-of-stock)
    ~7%  plums, scarce (200 seeded)            → confirmed while they last, then out-of-stock
    ~10% customer "decline"                    → cancelled (payment-declined), stock released
    ~10% customer "flaky": two 503s per call   → confirmed after in-process retries
    ~3%  customer "timeout": first call hangs  → confirmed after the client's timeout and a retry
    ~2%  customer "unstable": four 503s        → confirmed after a broker-delayed retry
    rest                                       → confirmed
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fulfilment.contracts import OrderLine, OrderPlaced
from workers.runtime.connection import publishing_channel
from workers.runtime.outgoing import outgoing_event
from workers.runtime.publisher import Publisher

PRICES = {"apple": 120, "pear": 90, "plum": 80, "quince": 300}


@dataclass(frozen=True)
class DemoOrder:
    """One order of the demo and the path it is meant to take."""

    event: OrderPlaced
    kind: str  # normal | stock-out | scarce | decline | flaky | timeout | unstable

    @property
    def order_id(self) -> str:
        return self.event.order_id


def demo_orders(count: int, *, run: str, seed: int | None = None) -> list[DemoOrder]:
    """`count` orders with ids ``demo-RUN-0001``…, the mix in the module docstring."""
    rng = random.Random(seed if seed is not None else run)
    kinds = [
        (0.08, "stock-out"),
        (0.15, "scarce"),
        (0.25, "decline"),
        (0.35, "flaky"),
        (0.38, "timeout"),
        (0.40, "unstable"),
    ]
    orders = []
    for i in range(1, count + 1):
        roll = rng.random()
        kind = next((name for bound, name in kinds if roll < bound), "normal")
        lines = {"apple": rng.randint(1, 4)}
        if rng.random() < 0.5:
            lines["pear"] = rng.randint(1, 3)
        if kind == "stock-out":
            lines["quince"] = 1
        elif kind == "scarce":
            lines = {"plum": rng.randint(2, 6)}
        customer = f"c-{rng.randint(1, 999):03d}"
        if kind in ("decline", "flaky", "timeout", "unstable"):
            customer += f"-{kind}"
        order_lines = [
            OrderLine(sku=sku, qty=qty, unit_price_cents=PRICES[sku]) for sku, qty in lines.items()
        ]
        event = OrderPlaced(
            order_id=f"demo-{run}-{i:04d}",
            customer_id=customer,
            lines=order_lines,
            total_cents=sum(line.qty * line.unit_price_cents for line in order_lines),
        )
        orders.append(DemoOrder(event, kind))
    return orders


async def publish_orders(
    url: str,
    orders: Sequence[DemoOrder],
    *,
    on_published: Callable[[int], None] | None = None,
) -> None:
    """Publish each OrderPlaced to exchange `orders` with a confirm, as its saga's start
    (correlation id = order id, message id = ``<order id>-placed``)."""
    async with publishing_channel(url, name="fleet demo") as channel:
        publisher = Publisher(channel, app_id="fleet.demo")
        for n, order in enumerate(orders, 1):
            await publisher.publish_outgoing(
                outgoing_event(
                    order.event,
                    exchange="orders",
                    message_id=f"{order.order_id}-placed",
                    correlation_id=order.order_id,
                    app_id="fleet.demo",
                )
            )
            if on_published is not None:
                on_published(n)
