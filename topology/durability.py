"""Settings that can lose messages, above all on a cluster where a node may die.

Two kinds of finding:

- on a cluster (`broker.clustered`), a classic queue lives on one node: while
  that node is down its messages cannot be consumed, and they are gone with its
  disk. Quorum queues replicate; the replica count should survive one loss.
- anywhere, a quorum queue must dead-letter what it gives up on, at least once,
  past an explicit delivery limit: without a target RabbitMQ drops the message.
  fleet's expansion always sets these; the check guards the expanded queues
  themselves, so a file or a change that slips past it is caught.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from topology.errors import TopologyInvalid
from topology.expand import expand
from topology.model import Topology
from topology.names import DEAD_SUFFIX, origin_queue
from topology.problems import Problem
from topology.resources import QueueDecl


def durability_problems(topology: Topology) -> list[Problem]:
    """What could lose a message: on a cluster, and in any quorum queue."""
    problems: list[Problem] = []
    if topology.broker.clustered:
        problems += _cluster_problems(topology)
    try:
        expanded = expand(topology)
    except TopologyInvalid:
        # A subscription's contract is not registered (reported by the contract
        # check where contracts are imported): guard every other queue meanwhile.
        expanded = expand(msgspec.structs.replace(topology, webhooks={}))
    problems += quorum_gaps(expanded.queues)
    return problems


def _cluster_problems(topology: Topology) -> list[Problem]:
    problems = []
    for name, queue in topology.queues.items():
        if queue.type == "classic":
            problems.append(
                Problem(
                    f"queues.{name}.type",
                    "a classic queue lives on one node of the cluster: its messages "
                    "cannot be consumed while that node is down and are lost with its "
                    "disk; use a quorum queue",
                    "warning",
                )
            )
    replicas = topology.broker.quorum_replicas
    if replicas is not None and replicas < 3:
        problems.append(
            Problem(
                "broker.quorum_replicas",
                f"{replicas} replica(s): a quorum queue stops accepting and delivering "
                "when one node is down (a majority must be up); use 3 or more",
                "warning",
            )
        )
    elif replicas is not None and replicas % 2 == 0:
        problems.append(
            Problem(
                "broker.quorum_replicas",
                f"{replicas} replicas survive no more node losses than {replicas - 1}; "
                "an odd count is as safe for less work",
                "warning",
            )
        )
    return problems


def quorum_gaps(queues: Iterable[QueueDecl]) -> list[Problem]:
    """Quorum queues that could drop a message: without a dead-letter target, an
    explicit delivery limit, or at-least-once dead-lettering.

    Dead-letter queues (`<queue>.dead`) are the end of the line and exempt: their
    delivery limit is one no operator reaches by peeking.
    """
    problems = []
    for queue in queues:
        if queue.type != "quorum" or queue.name.endswith(DEAD_SUFFIX):
            continue
        arguments = queue.arguments
        gaps = []
        if "x-dead-letter-exchange" not in arguments:
            gaps.append("no dead-letter target: a message past its delivery limit is dropped")
        if "x-delivery-limit" not in arguments:
            gaps.append("no explicit delivery limit (RabbitMQ 4 drops past 20 without a target)")
        if arguments.get("x-dead-letter-strategy") != "at-least-once":
            gaps.append(
                "dead-lettering is at-most-once: a message is lost if its target is "
                "unavailable (needs x-dead-letter-strategy at-least-once, "
                "x-overflow reject-publish)"
            )
        for gap in gaps:
            problems.append(
                Problem(
                    f"queues.{origin_queue(queue.name) or queue.name}",
                    f"quorum queue {queue.name!r}: {gap}",
                )
            )
    return problems
