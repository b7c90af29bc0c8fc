"""The reference fleet's notifications as signed outbound webhooks: each order that
ends gets exactly one accepted, verified webhook for its ending, even while the
receiver fails."""

from __future__ import annotations

from tests.integration.reference import WORKERS, Fleet, Order, fleet
from workers.testing import eventually

__all__ = ["fleet"]  # the fixture, imported for pytest

APPLE = [{"sku": "apple", "qty": 1, "unit_price_cents": 120}]


class TestNotificationWebhooks:
    async def test_every_ended_order_is_notified_once_by_a_signed_webhook(self, fleet) -> None:
        """Confirmed, declined and out-of-stock orders: one verified webhook per ending,
        the receiver's first two 503s retried through the broker."""
        # Given
        setup: Fleet = await fleet()
        setup.standins.webhooks.script([503, 503])
        setup.start(*WORKERS)
        setup.start_webhooks()
        orders = [
            Order("o-w1", "c-1", APPLE, "confirmed"),
            Order("o-w2", "c-2", APPLE, "confirmed"),
            Order("o-w3", "c-3-decline", APPLE, "payment-declined"),
            Order("o-w4", "c-4", [{"sku": "quince", "qty": 1, "unit_price_cents": 9}], None),
        ]
        # When
        setup.place(orders)
        counts = await setup.wait_finished(orders, seconds=60)
        receiver = setup.standins.webhooks
        await eventually(
            lambda: len(receiver.accepted) >= len(orders), what="a webhook per order", timeout=30
        )
        # Then
        assert counts.get("pending", 0) == 0
        accepted = receiver.accepted.values()
        assert sorted((r.body["order_id"], r.event_type) for r in accepted) == [
            ("o-w1", "OrderConfirmed"),
            ("o-w2", "OrderConfirmed"),
            ("o-w3", "OrderCancelled"),
            ("o-w4", "OrderCancelled"),
        ]
        assert all(r.verified for r in receiver.received)
        assert [r.status for r in receiver.received].count(503) == 2
        # Each attempt is recorded just after its answer: wait for the last one.
        outcomes: dict[str, int] = {}

        async def recorded() -> bool:
            nonlocal outcomes
            rows = await setup.query(
                lambda db: db.fetch(
                    "SELECT outcome, count(*) FROM fleet_webhook_deliveries GROUP BY outcome"
                )
            )
            outcomes = {row["outcome"]: row["count"] for row in rows}
            return sum(outcomes.values()) >= 6

        await eventually(recorded, what="six delivery attempts recorded")
        assert outcomes == {"delivered": 4, "retry": 2}
