"""Expanding a topology into broker objects: derived queues and their safety arguments."""

from __future__ import annotations

import fulfilment.contracts  # noqa: F401  (the webhook subscription binds their routing keys)
import pytest
from fulfilment import TOPOLOGY_FILE

from topology import BindingDecl, ExchangeDecl, QueueDecl, Resources, expand, load, loads
from topology.expand import DEAD_LETTER_DELIVERY_LIMIT
from topology.model import DEFAULT_DELIVERY_LIMIT

QUORUM_ONLY = {"x-delivery-limit", "x-dead-letter-strategy", "x-overflow"}


def expand_yaml(queues: str) -> Resources:
    """Expand a topology with one topic exchange `orders` and the given queues section."""
    return expand(loads("exchanges: {orders: {}}\nqueues:\n" + queues))


def queues_by_name(resources: Resources) -> dict[str, QueueDecl]:
    """The expanded queues, by name."""
    return {q.name: q for q in resources.queues}


class TestRetryQueues:
    """`<q>.retry.<delay>`: one per delay tier, holding a message, then sending it back."""

    def test_each_delay_tier_derives_a_retry_queue(self) -> None:
        """Delays [5s, 30s, 5m] give three retry queues named after the delay."""
        # Given
        resources = expand_yaml(
            "  inventory: {bind: [{exchange: orders}], retry: {delays: [5s, 30s, 5m]}}\n"
        )
        # When
        names = [q.name for q in resources.queues]
        # Then
        assert names == [
            "inventory",
            "inventory.retry.5s",
            "inventory.retry.30s",
            "inventory.retry.5m",
            "inventory.dead",
        ]

    def test_a_retry_queue_holds_messages_for_its_delay_in_milliseconds(self) -> None:
        """The delay is the retry queue's message TTL."""
        # Given
        resources = expand_yaml(
            "  inventory: {bind: [{exchange: orders}], retry: {delays: [250ms, 30s, 1h]}}\n"
        )
        # When
        queues = queues_by_name(resources)
        # Then
        assert queues["inventory.retry.250ms"].arguments["x-message-ttl"] == 250
        assert queues["inventory.retry.30s"].arguments["x-message-ttl"] == 30_000
        assert queues["inventory.retry.1h"].arguments["x-message-ttl"] == 3_600_000

    def test_an_expired_retry_goes_back_to_its_origin_queue_only(self) -> None:
        """Dead-lettering through the default exchange reaches the origin queue and no other."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        retry = queues_by_name(resources)["inventory.retry.30s"]
        # Then
        assert retry.arguments["x-dead-letter-exchange"] == ""
        assert retry.arguments["x-dead-letter-routing-key"] == "inventory"

    def test_only_the_failure_exchange_routes_to_retry_queues(self) -> None:
        """Only the runtime puts messages into a retry queue; the file's exchanges never do."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        sources = {b.source for b in resources.bindings if ".retry." in b.destination}
        # Then
        assert sources == {"inventory.failures"}

    def test_no_delays_means_no_retry_queues(self) -> None:
        """An empty delay list goes straight from in-process attempts to the dead-letter queue."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}], retry: {delays: []}}\n")
        # When
        names = [q.name for q in resources.queues]
        # Then
        assert names == ["inventory", "inventory.dead"]

    def test_retry_queues_share_the_origin_queue_type(self) -> None:
        """A classic queue's retry tiers are classic, a quorum queue's are quorum."""
        # Given
        resources = expand_yaml(
            "  a: {type: classic, bind: [{exchange: orders}]}\n"
            "  b: {type: quorum, bind: [{exchange: orders}]}\n"
        )
        # When
        queues = queues_by_name(resources)
        # Then
        assert queues["a.retry.5s"].type == "classic"
        assert queues["b.retry.5s"].type == "quorum"


class TestDeadLetterQueue:
    """`<q>.dead`: where messages that cannot be processed are parked."""

    def test_the_work_queue_dead_letters_to_its_dead_queue(self) -> None:
        """What the broker dead-letters (delivery limit) lands in `<q>.dead`."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        work = queues_by_name(resources)["inventory"]
        # Then
        assert work.arguments["x-dead-letter-exchange"] == ""
        assert work.arguments["x-dead-letter-routing-key"] == "inventory.dead"

    def test_a_quorum_dead_queue_survives_many_peeks(self) -> None:
        """Peeking at parked messages counts as deliveries; the limit is out of reach."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        dead = queues_by_name(resources)["inventory.dead"]
        # Then
        assert dead.type == "quorum"
        assert dead.arguments == {"x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT}

    def test_a_classic_dead_queue_has_no_arguments(self) -> None:
        """A classic dead-letter queue is a plain queue."""
        # Given
        resources = expand_yaml("  audit: {type: classic, bind: [{exchange: orders}]}\n")
        # When
        dead = queues_by_name(resources)["audit.dead"]
        # Then
        assert (dead.type, dead.arguments) == ("classic", {})


class TestQuorumSafety:
    """Quorum queues never drop a message silently."""

    def test_the_delivery_limit_is_explicit_by_default(self) -> None:
        """Without a configured limit, the work queue states the default of 20 itself."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        work = queues_by_name(resources)["inventory"]
        # Then
        assert DEFAULT_DELIVERY_LIMIT == 20
        assert work.arguments["x-delivery-limit"] == 20

    def test_a_configured_delivery_limit_is_used(self) -> None:
        """delivery_limit in the file becomes x-delivery-limit."""
        # Given
        resources = expand_yaml("  inventory: {delivery_limit: 5, bind: [{exchange: orders}]}\n")
        # When
        work = queues_by_name(resources)["inventory"]
        # Then
        assert work.arguments["x-delivery-limit"] == 5

    @pytest.mark.parametrize("name", ["inventory", "inventory.retry.5s"])
    def test_dead_lettering_is_confirmed(self, name: str) -> None:
        """At-least-once dead-lettering, which needs reject-publish overflow."""
        # Given
        resources = expand_yaml("  inventory: {bind: [{exchange: orders}]}\n")
        # When
        queue = queues_by_name(resources)[name]
        # Then
        assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
        assert queue.arguments["x-overflow"] == "reject-publish"
        assert queue.arguments["x-delivery-limit"] == DEFAULT_DELIVERY_LIMIT

    def test_the_whole_work_queue_arguments(self) -> None:
        """The complete argument set of a default quorum work queue, user arguments kept."""
        # Given
        resources = expand_yaml(
            "  inventory: {bind: [{exchange: orders}], arguments: {x-max-length: 1000}}\n"
        )
        # When
        work = queues_by_name(resources)["inventory"]
        # Then
        assert work.arguments == {
            "x-max-length": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "inventory.dead",
            "x-delivery-limit": 20,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def test_classic_queues_get_no_quorum_only_arguments(self) -> None:
        """Delivery limits and dead-letter strategies exist for quorum queues only."""
        # Given
        resources = expand_yaml("  audit: {type: classic, bind: [{exchange: orders}]}\n")
        # When
        classic = [q for q in resources.queues if q.name.startswith("audit")]
        # Then
        assert len(classic) == 5
        for queue in classic:
            assert not QUORUM_ONLY & queue.arguments.keys(), queue.name
        assert queues_by_name(resources)["audit"].arguments == {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "audit.dead",
        }


class TestStreams:
    """Streams are for replay and audit: nobody retries or parks their messages."""

    def test_a_stream_gets_no_derived_queues(self) -> None:
        """Only the stream itself is declared, durable, without dead-lettering."""
        # Given
        resources = expand_yaml("  order-events: {type: stream, bind: [{exchange: orders}]}\n")
        # When
        queues = resources.queues
        # Then
        assert queues == [QueueDecl(name="order-events", type="stream", durable=True)]

    def test_a_stream_is_still_bound(self) -> None:
        """The stream receives what its bindings route."""
        # Given
        resources = expand_yaml(
            "  order-events: {type: stream, bind: [{exchange: orders, routing_key: 'order.#'}]}\n"
        )
        # When / Then
        assert resources.bindings == [
            BindingDecl(source="orders", destination="order-events", routing_key="order.#")
        ]

    def test_a_stream_gets_no_failure_exchange(self) -> None:
        """Nothing consumes a stream, so nothing publishes its failures."""
        # Given
        resources = expand_yaml("  order-events: {type: stream, bind: [{exchange: orders}]}\n")
        # When
        names = [e.name for e in resources.exchanges]
        # Then
        assert names == ["orders"]


class TestFailureExchange:
    """`<q>.failures`: where a consumer publishes its retry, dead-letter and recounted copies."""

    def test_each_work_queue_gets_a_direct_failure_exchange(self) -> None:
        """Declared after the file's exchanges, direct and durable, one per work queue."""
        # Given
        resources = expand_yaml(
            "  inventory: {bind: [{exchange: orders}]}\n  payments: {bind: [{exchange: orders}]}\n"
        )
        # When
        exchanges = resources.exchanges
        # Then
        assert exchanges == [
            ExchangeDecl(name="orders", type="topic"),
            ExchangeDecl(name="inventory.failures", type="direct"),
            ExchangeDecl(name="payments.failures", type="direct"),
        ]

    def test_it_routes_each_queue_name_to_that_queue_alone(self) -> None:
        """The queue itself (recounts), each retry tier and the dead-letter queue, by name."""
        # Given
        resources = expand_yaml(
            "  inventory: {bind: [{exchange: orders}], retry: {delays: [5s, 1m]}}\n"
        )
        # When
        routes = [
            (b.routing_key, b.destination)
            for b in resources.bindings
            if b.source == "inventory.failures"
        ]
        # Then
        assert routes == [
            ("inventory", "inventory"),
            ("inventory.retry.5s", "inventory.retry.5s"),
            ("inventory.retry.1m", "inventory.retry.1m"),
            ("inventory.dead", "inventory.dead"),
        ]

    def test_a_delay_queue_gets_none(self) -> None:
        """A delay queue has no consumer: the broker itself hands its messages on."""
        # Given
        text = (
            "exchanges: {orders: {}}\n"
            "queues:\n"
            "  orders: {bind: [{exchange: orders, routing_key: order.placed}]}\n"
            "  deadlines:\n"
            "    bind: [{exchange: orders, routing_key: order.deadline}]\n"
            "    delay: {ttl: 30s, then: orders}\n"
        )
        # When
        names = [e.name for e in expand(loads(text)).exchanges]
        # Then
        assert names == ["orders", "orders.failures"]


class TestBindingsAndExchanges:
    """Bindings and exchanges pass through as the file declares them."""

    def test_each_binding_becomes_a_binding_declaration(self) -> None:
        """Source, destination, routing key and arguments are kept, in file order."""
        # Given
        text = (
            "exchanges: {orders: {}, payments: {type: direct}, audit: {type: headers}}\n"
            "queues:\n"
            "  inventory:\n"
            "    bind:\n"
            "      - {exchange: orders, routing_key: order.placed}\n"
            "      - {exchange: payments, routing_key: payment.declined}\n"
            "      - {exchange: audit, arguments: {x-match: all, region: eu}}\n"
        )
        # When
        resources = expand(loads(text))
        # Then
        assert [b for b in resources.bindings if b.source != "inventory.failures"] == [
            BindingDecl(source="orders", destination="inventory", routing_key="order.placed"),
            BindingDecl(source="payments", destination="inventory", routing_key="payment.declined"),
            BindingDecl(
                source="audit",
                destination="inventory",
                routing_key="#",
                arguments={"x-match": "all", "region": "eu"},
            ),
        ]

    def test_exchanges_keep_their_type_and_durability(self) -> None:
        """Each exchange in the file becomes one declaration."""
        # Given
        text = "exchanges: {orders: {}, scratch: {type: fanout, durable: false}}\n"
        # When
        resources = expand(loads(text))
        # Then
        assert resources.exchanges == [
            ExchangeDecl(name="orders", type="topic"),
            ExchangeDecl(name="scratch", type="fanout", durable=False),
        ]

    def test_the_reference_topology_expands_to_every_derived_queue(self) -> None:
        """Five work queues with three tiers each, their dead queues, the delay queue,
        the stream and its reader's dead queue, and the webhook subscription's queue
        with four tiers and its dead queue."""
        # Given
        topology = load(TOPOLOGY_FILE)
        # When
        resources = expand(topology)
        # Then
        names = {q.name for q in resources.queues}
        assert len(resources.queues) == 5 * (1 + 3 + 1) + 1 + (1 + 1) + (1 + 4 + 1)
        assert {"orders.retry.5s", "orders.dead", "notifications.retry.5m"} <= names
        assert {"webhook.notifications.retry.1s", "webhook.notifications.dead"} <= names
        assert "order-events.dead" not in names
        assert "order-events.reporting.dead" in names  # the stream worker's own
        assert "order-deadlines.dead" not in names
        webhook_events = sum(len(w.events) for w in topology.webhooks.values())
        # Each consumed queue's failure exchange is bound to it and to its derived queues.
        failure_routes = len(resources.queues) - 2  # all but the stream and the delay queue
        assert len(resources.bindings) == (
            sum(len(q.bind) for q in topology.queues.values()) + webhook_events + failure_routes
        )
        failures = {e.name for e in resources.exchanges if e.name.endswith(".failures")}
        assert failures == {
            "inventory.failures",
            "payments.failures",
            "shipping.failures",
            "orders.failures",
            "notifications.failures",
            "order-events.reporting.failures",
            "webhook.notifications.failures",
        }
