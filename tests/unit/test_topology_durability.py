"""Settings that can lose messages: classic queues on a cluster, quorum queues that could drop."""

from __future__ import annotations

from topology import QueueDecl, expand, loads
from topology.durability import durability_problems, quorum_gaps

CLUSTER = """
broker:
  urls: [amqp://rabbit-1:5672/, amqp://rabbit-2:5672/, amqp://rabbit-3:5672/]
exchanges: {orders: {}}
queues:
  inventory:
    bind: [{exchange: orders, routing_key: order.placed}]
  audit:
    type: classic
    bind: [{exchange: orders}]
"""

# The same queues with no broker section: a single node.
SINGLE_NODE = "exchanges:" + CLUSTER.split("exchanges:", 1)[1]


def quorum_only(*, replicas: int) -> str:
    """The cluster file with both queues quorum and `replicas` per queue."""
    return CLUSTER.replace("    type: classic\n", "").replace(
        "broker:\n", f"broker:\n  quorum_replicas: {replicas}\n", 1
    )


def messages(text: str) -> list[str]:
    return [str(p) for p in durability_problems(loads(text))]


class TestClassicQueuesOnACluster:
    def test_a_classic_queue_is_flagged_when_the_file_targets_a_cluster(self) -> None:
        """Its messages live on one node: unavailable while it is down, lost with its disk."""
        [problem] = messages(CLUSTER)
        assert problem.startswith("warning: queues.audit.type: a classic queue lives on one node")

    def test_a_classic_queue_is_fine_on_a_single_node(self) -> None:
        """Without a cluster there is no other node to lose it to."""
        assert messages(SINGLE_NODE) == []

    def test_a_quorum_replica_count_below_three_is_flagged(self) -> None:
        """With two replicas, one node down leaves no majority: the queue stops."""
        [problem] = messages(quorum_only(replicas=2))
        assert "broker.quorum_replicas: 2 replica(s)" in problem

    def test_an_even_replica_count_is_flagged(self) -> None:
        """Four replicas survive one loss, as three do."""
        [problem] = messages(quorum_only(replicas=4))
        assert "4 replicas survive no more node losses than 3" in problem

    def test_the_replica_count_reaches_every_quorum_queue(self) -> None:
        """Work, retry and dead-letter queues all get x-quorum-initial-group-size."""
        queues = expand(loads(quorum_only(replicas=3))).queues
        assert {q.name: q.arguments.get("x-quorum-initial-group-size") for q in queues} == {
            "inventory": 3,
            "inventory.retry.5s": 3,
            "inventory.retry.30s": 3,
            "inventory.retry.5m": 3,
            "inventory.dead": 3,
            "audit": 3,
            "audit.retry.5s": 3,
            "audit.retry.30s": 3,
            "audit.retry.5m": 3,
            "audit.dead": 3,
        }


class TestQuorumGaps:
    def test_every_quorum_queue_fleet_declares_is_safe(self) -> None:
        """Expansion always sets a target, a limit and at-least-once dead-lettering."""
        assert quorum_gaps(expand(loads(quorum_only(replicas=3))).queues) == []

    def test_a_quorum_queue_without_a_dead_letter_target_is_an_error(self) -> None:
        """Past its delivery limit RabbitMQ would drop the message."""
        queue = QueueDecl(
            name="inventory.retry.5s",
            type="quorum",
            arguments={"x-delivery-limit": 20, "x-dead-letter-strategy": "at-least-once"},
        )
        [problem] = quorum_gaps([queue])
        assert problem.severity == "error"
        assert problem.path == "queues.inventory"
        assert "no dead-letter target" in problem.message

    def test_at_most_once_dead_lettering_and_no_limit_are_both_reported(self) -> None:
        """Each gap is its own finding."""
        queue = QueueDecl(name="inventory", type="quorum", arguments={"x-dead-letter-exchange": ""})
        found = [p.message for p in quorum_gaps([queue])]
        assert len(found) == 2
        assert "no explicit delivery limit" in found[0]
        assert "at-most-once" in found[1]

    def test_dead_letter_queues_and_classic_queues_are_exempt(self) -> None:
        """A dead-letter queue is the end of the line; classic queues have no delivery limit."""
        assert (
            quorum_gaps(
                [
                    QueueDecl(name="inventory.dead", type="quorum"),
                    QueueDecl(name="x", type="classic"),
                ]
            )
            == []
        )
