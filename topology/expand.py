"""Topology → the broker objects it implies: retry and dead-letter queues, and each
consumed queue's failure exchange, included."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import Registry, UnknownEventType, default_registry
from topology.errors import TopologyInvalid
from topology.model import (
    DEFAULT_DELIVERY_LIMIT,
    Binding,
    Queue,
    RetryPolicy,
    Topology,
    WebhookSubscription,
)
from topology.names import (
    dead_letter_queue,
    failure_exchange,
    retry_queue,
    stream_worker_base,
    webhook_queue,
)
from topology.problems import Problem
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources
from topology.streams import stream_queues, super_stream_bindings, super_stream_exchange

#: A parked message may be peeked at (`fleet dlq show`) many times; each peek is
#: a delivery, so dead-letter quorum queues get a limit no operator will reach.
DEAD_LETTER_DELIVERY_LIMIT = 1_000_000


def expand(topology: Topology) -> Resources:
    """Every exchange, queue and binding the broker needs for this topology."""
    resources = Resources()
    for name, exchange in topology.exchanges.items():
        resources.exchanges.append(
            ExchangeDecl(
                name=name,
                type=exchange.type,
                durable=exchange.durable,
                arguments=exchange.arguments,
            )
        )
    replicas = _replicas(topology.broker.quorum_replicas)
    for name, queue in topology.queues.items():
        declared = _queues(name, queue)
        resources.queues += [
            _with(decl, replicas) if decl.type == "quorum" else decl for decl in declared
        ]
        resources.bindings += [
            BindingDecl(
                source=b.exchange,
                destination=name,
                routing_key=b.routing_key,
                arguments=b.arguments,
            )
            for b in queue.bind
        ]
        if queue.type == "stream" and queue.partitions is not None:
            resources.exchanges.append(super_stream_exchange(name))
            resources.bindings += super_stream_bindings(name, queue.partitions)
        if queue.type != "stream" and queue.delay is None:  # nothing consumes those two
            _add_failure_exchange(resources, name, declared)
    for name, worker in topology.workers.items():
        consumed = topology.queues.get(worker.queue)
        if consumed is not None and consumed.type == "stream":
            base = stream_worker_base(worker.queue, name)
            parked = _stream_worker_dead_letters(base)
            resources.queues.append(_with(parked, replicas))
            _add_failure_exchange(resources, base, [parked])
    for name, subscription in topology.webhooks.items():
        queue = webhook_work_queue(name, subscription)
        declared = _queues(webhook_queue(name), queue)
        resources.queues += declared
        resources.bindings += [
            BindingDecl(
                source=b.exchange, destination=webhook_queue(name), routing_key=b.routing_key
            )
            for b in queue.bind
        ]
        _add_failure_exchange(resources, webhook_queue(name), declared)
    return resources


def _add_failure_exchange(resources: Resources, queue: str, declared: list[QueueDecl]) -> None:
    """A consumed queue's `<queue>.failures`: a direct exchange bound to the queue itself
    (recounted messages), its retry tiers and its dead-letter queue, each by its own name."""
    exchange = failure_exchange(queue)
    resources.exchanges.append(ExchangeDecl(name=exchange, type="direct"))
    resources.bindings += [
        BindingDecl(source=exchange, destination=d.name, routing_key=d.name) for d in declared
    ]


def webhook_work_queue(
    name: str, subscription: WebhookSubscription, registry: Registry = default_registry
) -> Queue:
    """A subscription as the work queue it implies: bound to each subscribed event's
    routing key, with one broker-delayed tier per retry delay and no in-process retries.

    A routing key not written in the file is the contract's own, so the contracts
    must be registered (their modules imported) first.

    Raises:
        TopologyInvalid: a subscribed contract without a routing key is not registered.
    """
    bindings: list[Binding] = []
    for i, event in enumerate(subscription.subscribed()):
        key = event.routing_key
        if key is None:
            try:
                key = registry.lookup(event.contract, event.version).__routing_key__
            except UnknownEventType as exc:
                raise TopologyInvalid(
                    "<topology>",
                    [
                        Problem(
                            f"webhooks.{name}.events[{i}]",
                            f"{exc} (import the module that defines it, or give its routing_key)",
                        )
                    ],
                ) from None
        binding = Binding(exchange=event.exchange or subscription.exchange, routing_key=key)
        if binding not in bindings:
            bindings.append(binding)
    return Queue(
        type=subscription.queue_type,
        bind=bindings,
        retry=RetryPolicy(attempts=1, delays=subscription.retry.delays),
    )


def _queues(name: str, queue: Queue) -> list[QueueDecl]:
    if queue.type == "stream":
        return stream_queues(name, queue)
    if queue.delay is not None:
        # A delay queue: each message expires after the ttl and is dead-lettered to
        # its target. Nothing consumes it, so it has no retry or dead-letter queues.
        delayed = QueueDecl(
            name=name,
            type=queue.type,
            durable=queue.durable,
            arguments={
                **queue.arguments,
                "x-message-ttl": queue.delay.ttl.ms,
                **_dead_letter_to(queue.delay.then),
                **_quorum_safety(queue.type, queue.delivery_limit or DEFAULT_DELIVERY_LIMIT),
            },
        )
        return [delayed]
    dead = dead_letter_queue(name)
    work = QueueDecl(
        name=name,
        type=queue.type,
        durable=queue.durable,
        arguments={
            **queue.arguments,
            **_dead_letter_to(dead),
            **_quorum_safety(queue.type, queue.delivery_limit or DEFAULT_DELIVERY_LIMIT),
        },
    )
    retries = [
        QueueDecl(
            name=retry_queue(name, delay),
            type=queue.type,
            durable=queue.durable,
            arguments={
                "x-message-ttl": delay.ms,
                **_dead_letter_to(name),
                **_quorum_safety(queue.type, DEFAULT_DELIVERY_LIMIT),
            },
        )
        for delay in queue.retry.delays
    ]
    parked = QueueDecl(
        name=dead,
        type=queue.type,
        durable=queue.durable,
        arguments=(
            {"x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT} if queue.type == "quorum" else {}
        ),
    )
    return [work, *retries, parked]


def _stream_worker_dead_letters(base: str) -> QueueDecl:
    """A stream worker's dead-letter queue: quorum, whatever the stream (a stream
    cannot be read by `fleet dlq`, nor have a message taken out)."""
    return QueueDecl(
        name=dead_letter_queue(base),
        type="quorum",
        durable=True,
        arguments={"x-delivery-limit": DEAD_LETTER_DELIVERY_LIMIT},
    )


def _replicas(count: int | None) -> dict[str, Any]:
    # Unset, RabbitMQ places a replica on every node (up to its own limit).
    return {} if count is None else {"x-quorum-initial-group-size": count}


def _with(queue: QueueDecl, arguments: dict[str, Any]) -> QueueDecl:
    """The queue with `arguments` added; its own arguments win (a per-queue group size)."""
    if not arguments:
        return queue
    return msgspec.structs.replace(queue, arguments={**arguments, **queue.arguments})


def _dead_letter_to(queue: str) -> dict[str, Any]:
    # Through the default exchange: the message reaches that one queue only,
    # never the other subscribers of the exchange it was first published to.
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}


def _quorum_safety(queue_type: str, delivery_limit: int) -> dict[str, Any]:
    if queue_type != "quorum":
        return {}
    # An explicit limit (4.x defaults to 20 and drops past it without a target),
    # and broker-side dead-lettering that is confirmed, which needs reject-publish.
    return {
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
