"""The wiring check (handlers against bindings), and topic routing without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from fulfilment import TOPOLOGY_FILE

from topology import EventRoute, Problem, Topology, WorkerWiring, check_wiring, load, loads
from topology.routing import routes

ORDER_PLACED = EventRoute(name="OrderPlaced", routing_key="order.placed")
ORDER_CONFIRMED = EventRoute(name="OrderConfirmed", routing_key="order.confirmed")
ORDER_CANCELLED = EventRoute(name="OrderCancelled", routing_key="order.cancelled")
ORDER_DEADLINE = EventRoute(name="OrderDeadline", routing_key="order.deadline")
STOCK_RESERVED = EventRoute(name="StockReserved", routing_key="stock.reserved")
STOCK_REJECTED = EventRoute(name="StockRejected", routing_key="stock.rejected")
STOCK_RELEASED = EventRoute(name="StockReleased", routing_key="stock.released")
PAYMENT_CAPTURED = EventRoute(name="PaymentCaptured", routing_key="payment.captured")
PAYMENT_DECLINED = EventRoute(name="PaymentDeclined", routing_key="payment.declined")
SHIPMENT_SCHEDULED = EventRoute(name="ShipmentScheduled", routing_key="shipment.scheduled")
SHIPMENT_CANCELLED = EventRoute(name="ShipmentCancelled", routing_key="shipment.cancelled")
PAYMENT_REFUNDED = EventRoute(name="PaymentRefunded", routing_key="payment.refunded")

#: What the reference workers handle and emit, as `Worker.wiring()` reports it.
REFERENCE_WIRING = {
    "inventory": WorkerWiring(
        handles=[ORDER_PLACED, PAYMENT_DECLINED, ORDER_CANCELLED],
        emits=[STOCK_RESERVED, STOCK_REJECTED, STOCK_RELEASED],
    ),
    "payments": WorkerWiring(
        handles=[STOCK_RESERVED, ORDER_CANCELLED],
        emits=[PAYMENT_CAPTURED, PAYMENT_DECLINED, PAYMENT_REFUNDED],
    ),
    "shipping": WorkerWiring(
        handles=[PAYMENT_CAPTURED, ORDER_CANCELLED], emits=[SHIPMENT_SCHEDULED, SHIPMENT_CANCELLED]
    ),
    "orders": WorkerWiring(
        handles=[ORDER_PLACED, STOCK_REJECTED, STOCK_RELEASED, SHIPMENT_SCHEDULED, ORDER_DEADLINE],
        emits=[ORDER_DEADLINE, ORDER_CONFIRMED, ORDER_CANCELLED],
    ),
    "notifications": WorkerWiring(
        handles=[ORDER_CONFIRMED, ORDER_CANCELLED, PAYMENT_REFUNDED], emits=[]
    ),
}

#: Two workers: inventory turns orders into stock events, billing consumes them.
TWO_WORKERS = """
exchanges: {orders: {}, inventory: {}}
queues:
  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}
  billing: {bind: [{exchange: inventory, routing_key: stock.reserved}]}
workers:
  inventory: {module: m, queue: inventory, publish_to: inventory%s}
  billing: {module: m, queue: billing}
"""


def two_workers(inventory_extra: str = "") -> Topology:
    """The two-worker topology, with extra settings for the inventory worker."""
    return loads(TWO_WORKERS % inventory_extra)


class TestCheckWiring:
    """check_wiring: what the handlers' code says against what the file routes."""

    def test_the_reference_fleet_is_wired_without_problems(self) -> None:
        """Every handled event is routed and every emitted event has a receiver."""
        # Given
        topology = load(TOPOLOGY_FILE)
        # When
        problems = check_wiring(topology, REFERENCE_WIRING)
        # Then
        assert problems == []

    def test_a_handled_event_that_no_binding_routes_is_an_error(self) -> None:
        """A handler whose event never reaches the worker's queue would never run."""
        # Given
        topology = two_workers()
        wiring = {"billing": WorkerWiring(handles=[STOCK_RESERVED, STOCK_REJECTED], emits=[])}
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.billing",
                "handles StockRejected (stock.rejected) but no binding of queue 'billing' "
                "routes it",
            )
        ]

    def test_emitting_without_publish_to_is_an_error(self) -> None:
        """Follow-on events need an exchange to go to."""
        # Given
        topology = two_workers()
        wiring = {
            "billing": WorkerWiring(
                handles=[STOCK_RESERVED], emits=[PAYMENT_CAPTURED, PAYMENT_DECLINED]
            )
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.billing.publish_to",
                "the handlers emit PaymentCaptured, PaymentDeclined: "
                "name the exchange to publish them to",
            )
        ]

    def test_an_emitted_event_nobody_receives_is_a_warning(self) -> None:
        """An unrouted follow-on event would be returned by the broker."""
        # Given
        topology = two_workers()
        wiring = {
            "inventory": WorkerWiring(
                handles=[ORDER_PLACED], emits=[STOCK_RESERVED, STOCK_REJECTED]
            )
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.inventory",
                "emits StockRejected (stock.rejected) to exchange 'inventory' but no queue "
                "receives it; bind one or list it under 'terminal'",
                "warning",
            )
        ]

    def test_a_terminal_event_may_have_no_receiver(self) -> None:
        """Events listed under `terminal` are allowed to go nowhere."""
        # Given
        topology = two_workers(", terminal: [StockRejected]")
        wiring = {
            "inventory": WorkerWiring(
                handles=[ORDER_PLACED], emits=[STOCK_RESERVED, STOCK_REJECTED]
            )
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == []

    def test_a_queue_receiving_an_event_its_worker_does_not_handle_is_a_warning(self) -> None:
        """An event that reaches a queue with no handler for it would be dead-lettered."""
        # Given
        topology = loads(
            """
exchanges: {orders: {}, inventory: {}}
queues:
  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}
  billing: {bind: [{exchange: inventory, routing_key: "stock.*"}]}
workers:
  inventory: {module: m, queue: inventory, publish_to: inventory}
  billing: {module: m, queue: billing}
"""
        )
        wiring = {
            "inventory": WorkerWiring(
                handles=[ORDER_PLACED], emits=[STOCK_RESERVED, STOCK_REJECTED]
            ),
            "billing": WorkerWiring(handles=[STOCK_RESERVED], emits=[]),
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.billing",
                "queue 'billing' receives StockRejected (emitted by inventory) but no handler "
                "takes it: it would be dead-lettered",
                "warning",
            )
        ]

    def test_a_terminal_event_reaching_a_queue_that_does_not_handle_it_is_a_warning(
        self,
    ) -> None:
        """`terminal` allows an event to go nowhere, not to be dead-lettered where it arrives."""
        # Given
        topology = loads(
            """
exchanges: {orders: {}, inventory: {}}
queues:
  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}
  billing: {bind: [{exchange: inventory, routing_key: "stock.*"}]}
workers:
  inventory: {module: m, queue: inventory, publish_to: inventory, terminal: [StockRejected]}
  billing: {module: m, queue: billing}
"""
        )
        wiring = {
            "inventory": WorkerWiring(handles=[ORDER_PLACED], emits=[STOCK_REJECTED]),
            "billing": WorkerWiring(handles=[STOCK_RESERVED], emits=[]),
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.billing",
                "queue 'billing' receives StockRejected (emitted by inventory) but no handler "
                "takes it: it would be dead-lettered",
                "warning",
            )
        ]

    def test_a_receiving_queue_without_a_worker_is_not_a_problem(self) -> None:
        """A stream (or any queue nobody consumes in this fleet) may take every event."""
        # Given
        topology = loads(
            """
exchanges: {orders: {}, inventory: {}}
queues:
  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}
  audit: {type: stream, bind: [{exchange: inventory, routing_key: "#"}]}
workers:
  inventory: {module: m, queue: inventory, publish_to: inventory}
"""
        )
        wiring = {"inventory": WorkerWiring(handles=[ORDER_PLACED], emits=[STOCK_RESERVED])}
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == []

    def test_wildcard_bindings_count_as_routing(self) -> None:
        """A queue bound with `order.*` receives order.placed."""
        # Given
        topology = loads(
            "exchanges: {orders: {}}\n"
            "queues: {orders: {bind: [{exchange: orders, routing_key: 'order.*'}]}}\n"
            "workers: {orders: {module: m, queue: orders}}\n"
        )
        wiring = {"orders": WorkerWiring(handles=[ORDER_PLACED, ORDER_CANCELLED], emits=[])}
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == []

    def test_wiring_of_a_worker_the_file_lacks_is_ignored(self) -> None:
        """Code for a worker the topology does not run is not checked against it."""
        # Given
        topology = two_workers()
        wiring = {"ghost": WorkerWiring(handles=[PAYMENT_CAPTURED], emits=[ORDER_CONFIRMED])}
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == []

    def test_several_problems_are_reported_together(self) -> None:
        """Errors and warnings of several workers come back in one list."""
        # Given
        topology = two_workers()
        wiring = {
            "inventory": WorkerWiring(
                handles=[ORDER_PLACED, PAYMENT_DECLINED], emits=[STOCK_RESERVED, STOCK_RELEASED]
            ),
            "billing": WorkerWiring(handles=[STOCK_RESERVED], emits=[PAYMENT_CAPTURED]),
        }
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert sorted(str(p) for p in problems) == [
            "warning: workers.inventory: emits StockReleased (stock.released) to exchange "
            "'inventory' but no queue receives it; bind one or list it under 'terminal'",
            "workers.billing.publish_to: the handlers emit PaymentCaptured: "
            "name the exchange to publish them to",
            "workers.inventory: handles PaymentDeclined (payment.declined) but no binding "
            "of queue 'inventory' routes it",
        ]


class TestRoutes:
    """How an exchange routes a routing key, as RabbitMQ does."""

    @pytest.mark.parametrize(
        ("binding_key", "routing_key", "expected"),
        [
            ("order.placed", "order.placed", True),
            ("order.placed", "order.cancelled", False),
            ("order.*", "order.placed", True),
            ("order.*", "order", False),
            ("order.*", "order.placed.eu", False),
            ("*.placed", "order.placed", True),
            ("*.placed", "placed", False),
            ("order.#", "order", True),
            ("order.#", "order.placed", True),
            ("order.#", "order.placed.eu", True),
            ("order.#", "orders.placed", False),
            ("#", "order.placed", True),
            ("#", "anything", True),
            ("#.placed", "order.placed", True),
            ("#.placed", "placed", True),
            ("#.placed", "order.placed.eu", False),
            ("order.#.eu", "order.eu", True),
            ("order.#.eu", "order.placed.by.web.eu", True),
            ("*.*", "order.placed", True),
            ("*.*", "order", False),
            ("*.#", "order", True),
        ],
    )
    def test_topic_exchanges_match_words_and_wildcards(
        self, binding_key: str, routing_key: str, expected: bool
    ) -> None:
        """`*` is exactly one word, `#` is zero or more."""
        # Given / When
        routed = routes("topic", binding_key, routing_key)
        # Then
        assert routed is expected

    def test_direct_exchanges_match_the_whole_key(self) -> None:
        """A direct binding key is compared as is: wildcards are plain text."""
        # Given / When / Then
        assert routes("direct", "order.placed", "order.placed")
        assert not routes("direct", "order.*", "order.placed")
        assert not routes("direct", "#", "order.placed")

    @pytest.mark.parametrize("exchange_type", ["fanout", "headers"])
    def test_fanout_and_headers_exchanges_count_as_routing_any_key(
        self, exchange_type: str
    ) -> None:
        """Fanout ignores the key; headers route on headers a static check cannot see."""
        # Given / When / Then
        assert routes(exchange_type, "order.placed", "payment.captured")


class TestVersions:
    """A consumer that cannot read a version some producer emits is reported."""

    TOPOLOGY = """
exchanges: {signups: {}, orders: {}}
queues:
  intake: {bind: [{exchange: orders, routing_key: "#"}]}
  old: {bind: [{exchange: signups, routing_key: "#"}]}
workers:
  producer: {module: m, queue: intake, publish_to: signups}
  old: {module: m, queue: old}
"""

    def wiring(self, emitted: int, handled: list[int], name: str = "Signup") -> dict[str, Any]:
        route = "signup.made"
        return {
            "producer": WorkerWiring(handles=[], emits=[EventRoute(name, route, emitted)]),
            "old": WorkerWiring(handles=[EventRoute(name, route, v) for v in handled], emits=[]),
        }

    def test_a_version_no_chain_leads_from_is_an_error(self) -> None:
        problems = check_wiring(loads(self.TOPOLOGY), self.wiring(emitted=3, handled=[1]))
        assert [str(p) for p in problems] == [
            "workers.old: receives Signup v3 (emitted by producer) but handles v1, and no "
            "upcaster or downcaster leads there: it would be parked as version-unsupported"
        ]

    def test_a_version_an_upcaster_chain_carries_to_the_handler_is_fine(self) -> None:
        from tests.fixtures import versioned_workers  # noqa: F401  (its upcasters)

        problems = check_wiring(loads(self.TOPOLOGY), self.wiring(emitted=1, handled=[2]))
        assert problems == []

    def test_the_handled_version_itself_is_fine(self) -> None:
        assert check_wiring(loads(self.TOPOLOGY), self.wiring(emitted=1, handled=[1])) == []
