"""Does the reference fleet's books balance? Read-only checks over its tables.

Used by `fleet demo` for its closing table and by the integration tests. They
assume the workers share one database (as `fleet up` and the tests run them)
and are meaningful once the fleet is quiet (no saga in flight).

    summary = await summarize(db, order_ids)     # outcomes and saga latency
    problems = await check_books(db)             # [] when everything reconciles
    problems += reconcile_gateway(charges, ledger_net)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Events that end a saga; orders emits exactly one per order.
TERMINAL = ("OrderConfirmed", "OrderCancelled")
#: The events a confirmation rests on: none of them may be parked for a confirmed order.
CONFIRMING = ("OrderPlaced", "StockReserved", "PaymentCaptured", "ShipmentScheduled")


@dataclass
class Summary:
    """How a set of sagas ended."""

    orders: int = 0
    confirmed: int = 0
    pending: int = 0
    cancelled: dict[str, int] = field(default_factory=dict)  # by reason
    dead_lettered: int = 0  # timeline rows: deliveries parked in a dead-letter queue
    retried: int = 0  # timeline rows: deliveries sent to a delay tier
    latencies_ms: list[float] = field(default_factory=list)  # first event → terminal event

    @property
    def finished(self) -> int:
        return self.confirmed + sum(self.cancelled.values())

    def percentile(self, share: float) -> float | None:
        """The latency at `share` (0.5, 0.95) in milliseconds, nearest rank."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))
        return ordered[rank]


async def status_counts(db: Any, order_ids: Sequence[str]) -> dict[str, int]:
    """Orders by status (`pending`, `confirmed`, `cancelled`); unseen orders count as
    `pending` (their OrderPlaced has not reached orders yet)."""
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM orders WHERE order_id = ANY($1::text[]) GROUP BY status",
        list(order_ids),
    )
    counts = {row["status"]: row["n"] for row in rows}
    counts["pending"] = counts.get("pending", 0) + len(order_ids) - sum(counts.values())
    return counts


async def summarize(db: Any, order_ids: Sequence[str]) -> Summary:
    """Outcomes, failures on the timeline and end-to-end latency of these orders' sagas."""
    summary = Summary(orders=len(order_ids))
    rows = await db.fetch(
        "SELECT status, reason, count(*) AS n FROM orders WHERE order_id = ANY($1::text[]) "
        "GROUP BY status, reason",
        list(order_ids),
    )
    for row in rows:
        if row["status"] == "confirmed":
            summary.confirmed += row["n"]
        elif row["status"] == "cancelled":
            reason = row["reason"] or "unknown"
            summary.cancelled[reason] = summary.cancelled.get(reason, 0) + row["n"]
    summary.pending = summary.orders - summary.finished
    sagas = await db.fetch(
        """
        SELECT e.correlation_id,
               count(*) FILTER (WHERE e.outcome = 'dead-lettered') AS dead,
               count(*) FILTER (WHERE e.outcome = 'retried') AS retried,
               extract(epoch FROM
                   min(e.at) FILTER (WHERE e.outcome = 'processed'
                                     AND e.emitted && $2::text[]) - min(e.at)) * 1000 AS ms
        FROM fleet_events e
        WHERE e.correlation_id IN (SELECT correlation_id FROM orders
                                   WHERE order_id = ANY($1::text[]))
        GROUP BY e.correlation_id
        """,
        list(order_ids),
        list(TERMINAL),
    )
    for saga in sagas:
        summary.dead_lettered += saga["dead"]
        summary.retried += saga["retried"]
        if saga["ms"] is not None:
            summary.latencies_ms.append(float(saga["ms"]))
    return summary


async def check_books(db: Any) -> list[str]:
    """Every invariant of the reference fleet's state, as problems (empty: all hold).

    - each finished order ended exactly once (one terminal event on its timeline);
    - stock is conserved: initial = available + held, per SKU;
    - nothing is held, charged or shipped for a cancelled order;
    - the payments ledger holds exactly the confirmed orders' totals;
    - no confirmed order has one of the events it rests on parked (`CONFIRMING`).
    """
    problems: list[str] = []
    for row in await db.fetch(
        """
        SELECT o.order_id, o.status, count(e.id) AS ends
        FROM orders o
        LEFT JOIN fleet_events e
               ON e.correlation_id = o.correlation_id AND e.worker = 'orders'
              AND e.outcome = 'processed' AND e.emitted && $1::text[]
        WHERE o.status <> 'pending'
        GROUP BY o.order_id, o.status
        HAVING count(e.id) <> 1
        """,
        list(TERMINAL),
    ):
        problems.append(f"order {row['order_id']} ({row['status']}) ended {row['ends']} times")
    for row in await db.fetch(
        """
        SELECT s.sku, s.initial, s.available, coalesce(h.held, 0) AS held
        FROM inventory_stock s
        LEFT JOIN (SELECT key AS sku, sum(value::int) AS held
                   FROM inventory_reservations, jsonb_each_text(lines)
                   WHERE status = 'held' GROUP BY key) h ON h.sku = s.sku
        WHERE s.initial <> s.available + coalesce(h.held, 0)
        """
    ):
        problems.append(
            f"stock of {row['sku']} not conserved: initial {row['initial']} != "
            f"available {row['available']} + held {row['held']}"
        )
    for row in await db.fetch(
        """
        SELECT DISTINCT o.order_id, e.type, e.worker
        FROM orders o
        JOIN fleet_events e ON e.correlation_id = o.correlation_id
        WHERE o.status = 'confirmed' AND e.outcome = 'dead-lettered' AND e.type = ANY($1::text[])
        """,
        list(CONFIRMING),
    ):
        problems.append(
            f"order {row['order_id']} is confirmed, but {row['worker']} parked its {row['type']}"
        )
    for what, query in _LEAKS.items():
        for row in await db.fetch(query):
            problems.append(f"{what} for cancelled order {row['order_id']}")
    for row in await db.fetch(
        """
        SELECT coalesce(o.order_id, l.order_id) AS order_id, o.status,
               coalesce(o.total_cents, 0) AS total, coalesce(l.net, 0) AS net
        FROM (SELECT order_id,
                     sum(CASE kind WHEN 'capture' THEN amount_cents ELSE -amount_cents END) AS net
              FROM payment_ledger GROUP BY order_id) l
        FULL JOIN (SELECT * FROM orders WHERE status = 'confirmed') o ON o.order_id = l.order_id
        WHERE coalesce(l.net, 0) <> CASE WHEN o.status = 'confirmed' THEN o.total_cents ELSE 0 END
        """
    ):
        problems.append(
            f"ledger holds {row['net']} for order {row['order_id']} "
            f"({row['status'] or 'not confirmed'}, total {row['total']})"
        )
    return problems


_LEAKS = {
    "stock held": """
        SELECT r.order_id FROM inventory_reservations r JOIN orders o USING (order_id)
        WHERE r.status = 'held' AND o.status = 'cancelled'""",
    "a shipment booked": """
        SELECT s.order_id FROM shipments s JOIN orders o USING (order_id)
        WHERE s.status = 'scheduled' AND o.status = 'cancelled'""",
}


async def ledger_net(db: Any) -> dict[str, int]:
    """Net money per order in the payments ledger (captures minus refunds)."""
    rows = await db.fetch(
        "SELECT order_id, sum(CASE kind WHEN 'capture' THEN amount_cents ELSE -amount_cents END)"
        " AS net FROM payment_ledger GROUP BY order_id"
    )
    return {row["order_id"]: int(row["net"]) for row in rows}


def reconcile_gateway(
    charges: Iterable[dict[str, Any]],
    ledger: dict[str, int],
    order_ids: Collection[str] | None = None,
) -> list[str]:
    """The gateway's charges (its `GET /charges`) against the ledger: no order holds
    more than one live charge, and what the gateway kept is what the ledger says.

    `order_ids` limits the check to those orders (a gateway restarted since
    earlier orders forgot their charges).
    """
    live: dict[str, list[dict[str, Any]]] = {}
    for charge in charges:
        if charge["status"] == "captured":
            live.setdefault(charge["order_id"], []).append(charge)
    if order_ids is not None:
        wanted = set(order_ids)
        live = {o: c for o, c in live.items() if o in wanted}
        ledger = {o: net for o, net in ledger.items() if o in wanted}
    problems = [
        f"order {order_id} charged {len(held)} times at the gateway"
        for order_id, held in live.items()
        if len(held) > 1
    ]
    for order_id in sorted(set(live) | {o for o, net in ledger.items() if net}):
        kept = sum(c["amount_cents"] for c in live.get(order_id, []))
        if kept != ledger.get(order_id, 0):
            problems.append(
                f"gateway kept {kept} for order {order_id}, ledger says {ledger.get(order_id, 0)}"
            )
    return problems
