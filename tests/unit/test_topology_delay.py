"""Delay queues: hold each message for a ttl, then hand it to another queue.

The reference fleet's deadlines (`order-deadlines`) are one: expanded into a
single queue with a message TTL that dead-letters to its target, checked so
that the target exists and no worker consumes the delay queue itself.
"""

from __future__ import annotations

import pytest
from fulfilment import TOPOLOGY_FILE

from topology import (
    EventRoute,
    Problem,
    TopologyInvalid,
    WorkerWiring,
    check_wiring,
    expand,
    load,
    loads,
)
from topology.model import DEFAULT_DELIVERY_LIMIT
from workers.loader import load_worker

BASE = """
exchanges: {orders: {}}
queues:
  orders:
    bind: [{exchange: orders, routing_key: order.placed}]
%s
workers:
  orders: {module: m, queue: orders, publish_to: orders}
%s
"""
DEADLINES = """
  deadlines:
    type: %s
    bind: [{exchange: orders, routing_key: order.deadline}]
    delay: {ttl: 30s, then: %s}
"""
DEADLINE = EventRoute(name="OrderDeadline", routing_key="order.deadline")


def topology_text(queue_type: str = "quorum", then: str = "orders", extra: str = "") -> str:
    return BASE % (DEADLINES % (queue_type, then), extra)


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        loads(text, source="broken.yaml")
    return [str(p) for p in caught.value.problems]


class TestExpand:
    @pytest.mark.parametrize("queue_type", ["quorum", "classic"])
    def test_a_delay_queue_holds_for_its_ttl_then_dead_letters_to_its_target(
        self, queue_type: str
    ) -> None:
        """x-message-ttl is the ttl; expiry goes to the target through the default exchange."""
        # Given / When
        queues = {q.name: q for q in expand(loads(topology_text(queue_type))).queues}
        # Then
        arguments = queues["deadlines"].arguments
        assert arguments["x-message-ttl"] == 30_000
        assert arguments["x-dead-letter-exchange"] == ""
        assert arguments["x-dead-letter-routing-key"] == "orders"
        assert queues["deadlines"].type == queue_type

    def test_a_quorum_delay_queue_dead_letters_at_least_once(self) -> None:
        """Expiry must not drop a deadline: the quorum safety arguments are set."""
        # Given / When
        queues = {q.name: q for q in expand(loads(topology_text())).queues}
        # Then
        arguments = queues["deadlines"].arguments
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
        assert arguments["x-delivery-limit"] == DEFAULT_DELIVERY_LIMIT

    def test_no_retry_or_dead_letter_queues_are_derived_for_a_delay_queue(self) -> None:
        """Nothing consumes it, so nothing retries or parks from it."""
        # Given / When
        names = {q.name for q in expand(loads(topology_text())).queues}
        # Then
        assert {n for n in names if n.startswith("deadlines")} == {"deadlines"}
        assert "orders.dead" in names

    def test_a_delay_queue_is_bound_like_any_queue(self) -> None:
        # Given / When
        bindings = expand(loads(topology_text())).bindings
        # Then
        assert [(b.source, b.routing_key) for b in bindings if b.destination == "deadlines"] == [
            ("orders", "order.deadline")
        ]


class TestCheck:
    def test_the_target_must_be_a_known_queue(self) -> None:
        # Given / When / Then
        assert problems_of(topology_text(then="ordres")) == [
            "queues.deadlines.delay.then: unknown queue 'ordres' (known: deadlines, orders)"
        ]

    def test_a_delay_queue_cannot_target_itself(self) -> None:
        # Given / When / Then
        assert problems_of(topology_text(then="deadlines")) == [
            "queues.deadlines.delay.then: a delay queue cannot hand messages back to itself"
        ]

    def test_a_stream_cannot_be_a_delay_queue(self) -> None:
        # Given / When / Then
        assert problems_of(topology_text(queue_type="stream")) == [
            "queues.deadlines.delay: a stream cannot delay messages (they never expire one "
            "by one): make it a quorum or classic queue"
        ]

    def test_a_retry_policy_on_a_delay_queue_is_an_error(self) -> None:
        # Given
        text = topology_text().replace(
            "delay: {ttl: 30s, then: orders}",
            "delay: {ttl: 30s, then: orders}\n    retry: {attempts: 5}",
        )
        # When / Then
        assert problems_of(text) == [
            "queues.deadlines.retry: a delay queue has no consumer, so nothing is retried "
            "from it: remove it"
        ]

    def test_a_worker_cannot_consume_a_delay_queue(self) -> None:
        # Given
        text = topology_text(extra="  sneaky: {module: m, queue: deadlines}")
        # When / Then
        assert problems_of(text) == [
            "workers.sneaky.queue: queue 'deadlines' is a delay queue: its messages go to "
            "'orders' after 30s; consume that queue"
        ]

    def test_the_ttl_is_a_duration(self) -> None:
        # Given
        text = topology_text().replace("ttl: 30s", "ttl: soon")
        # When
        problems = problems_of(text)
        # Then
        assert len(problems) == 1
        assert problems[0].startswith("queues.deadlines.delay.ttl: invalid duration 'soon'")


class TestWiring:
    def test_an_event_reaching_a_worker_through_a_delay_queue_is_routed(self) -> None:
        """orders handles OrderDeadline: routed to `deadlines`, which hands it to `orders`."""
        # Given
        topology = loads(topology_text())
        wiring = {"orders": WorkerWiring(handles=[DEADLINE], emits=[DEADLINE])}
        # When / Then
        assert check_wiring(topology, wiring) == []

    def test_a_delayed_event_nobody_handles_at_the_target_is_a_warning(self) -> None:
        """The delay queue's target counts as a receiver of what is published to it."""
        # Given
        topology = loads(topology_text())
        wiring = {"orders": WorkerWiring(handles=[], emits=[DEADLINE])}
        # When
        problems = check_wiring(topology, wiring)
        # Then
        assert problems == [
            Problem(
                "workers.orders",
                "queue 'orders' receives OrderDeadline (emitted by orders) but no handler "
                "takes it: it would be dead-lettered",
                "warning",
            )
        ]

    def test_the_reference_workers_agree_with_the_reference_topology(self) -> None:
        """The code of the five reference workers, deadlines included, wired without problems."""
        # Given
        topology = load(TOPOLOGY_FILE)
        wiring = {name: load_worker(name, spec).wiring() for name, spec in topology.workers.items()}
        # When / Then
        assert check_wiring(topology, wiring) == []
        assert topology.queues["order-deadlines"].delay is not None
