"""Operations on dead-letter (and retry) queues: list, inspect, replay, purge.

Listing and inspecting read through the management API and leave messages in
place; replay and purge work over AMQP. Replay publishes each chosen message
back to its origin queue (through the default exchange, so only that queue
sees it) with a confirm, and only then acks it in the dead-letter queue: a
replay interrupted half-way loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import aiormq
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from topology.management import Management, PeekedMessage
from topology.names import DEAD_SUFFIX, RETRY_INFIX, dead_letter_queue, is_derived, origin_queue
from workers.errors import NotADeadLetterQueue
from workers.runtime import headers as h
from workers.runtime.connection import connect
from workers.runtime.deadletter import copy_properties
from workers.runtime.publisher import Publisher

#: Headers removed on replay, so the message starts over: fleet's failure
#: record and the broker's own dead-lettering history (RabbitMQ 4 adds the
#: x-last-death-* headers; 3.x sets only x-death and x-first-death-*).
RESET_HEADERS = (
    *h.FAILURE_HEADERS,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


def broker_reason(headers: dict[str, Any]) -> str:
    """Why the broker itself dead-lettered a message: the reason of its latest death.

    A message fleet retried through a delay tier has died before (``expired``, on
    the way back from the tier), so the first death is not the last: RabbitMQ 4
    says the last in x-last-death-reason; 3.x has no such header, but lists the
    most recent death first in x-death.
    """
    latest = headers.get("x-last-death-reason")
    deaths = headers.get("x-death")
    if latest is None and isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        latest = deaths[0].get("reason")
    return str(latest or headers.get("x-first-death-reason") or "unknown")


@dataclass(frozen=True)
class ParkedQueue:
    """A dead-letter or retry queue and how many messages it holds."""

    name: str
    kind: str  # "dead" | "retry"
    origin: str
    ready: int
    unacked: int


@dataclass(frozen=True)
class ParkedMessage:
    """A message in a dead-letter queue, with the reason it is there."""

    message_id: str | None
    type: str | None
    reason: str
    error_type: str | None
    error: str | None
    attempts: int | None
    worker: str | None
    original_exchange: str | None
    original_routing_key: str | None
    first_failure: str | None
    last_failure: str | None
    body: bytes

    @classmethod
    def from_peek(cls, message: PeekedMessage) -> ParkedMessage:
        properties = message.properties
        headers: dict[str, Any] = properties.get("headers") or {}
        reason = headers.get(h.REASON)
        if reason is None:
            # Parked by the broker itself (a quorum queue's delivery limit, a reject).
            reason = f"{broker_reason(headers)} (by the broker)"
        return cls(
            message_id=properties.get("message_id"),
            type=properties.get("type"),
            reason=str(reason),
            error_type=headers.get(h.ERROR_TYPE),
            error=headers.get(h.ERROR_MESSAGE),
            attempts=headers.get(h.ATTEMPTS),
            worker=headers.get(h.WORKER),
            original_exchange=headers.get(
                h.ORIGINAL_EXCHANGE, headers.get("x-first-death-exchange")
            ),
            original_routing_key=headers.get(h.ORIGINAL_ROUTING_KEY),
            first_failure=headers.get(h.FIRST_FAILURE),
            last_failure=headers.get(h.LAST_FAILURE),
            body=message.payload,
        )


def resolve(queue: str) -> str:
    """``inventory`` → ``inventory.dead``; a derived name is returned as it is."""
    return queue if is_derived(queue) else dead_letter_queue(queue)


def parked_queues(management: Management) -> list[ParkedQueue]:
    """Every dead-letter and retry queue of the vhost with its depth."""
    found = []
    for queue in management.queues():
        origin = origin_queue(queue.name)
        if origin is None or not is_derived(queue.name):
            continue
        kind = "dead" if queue.name.endswith(DEAD_SUFFIX) else "retry"
        found.append(
            ParkedQueue(
                queue.name, kind, origin, queue.messages_ready, queue.messages_unacknowledged
            )
        )
    return sorted(found, key=lambda q: (q.origin, q.kind, q.name))


async def exact_depths(url: str, queues: list[ParkedQueue]) -> list[ParkedQueue]:
    """The same queues with ready counts read over AMQP, which are exact: the
    management API's figures lag by its statistics interval (5 s by default)."""
    connection = await connect(url, name="fleet dlq list")
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        exact = []
        for queue in queues:
            declared = await channel.queue_declare(queue.name, passive=True)
            exact.append(
                ParkedQueue(
                    queue.name, queue.kind, queue.origin, declared.message_count or 0, queue.unacked
                )
            )
        return exact
    finally:
        await connection.close()


def show(management: Management, queue: str, limit: int) -> list[ParkedMessage] | None:
    """Up to `limit` messages from the head of `queue`, left in place; None if no such queue."""
    peeked = management.peek(queue, limit)
    return None if peeked is None else [ParkedMessage.from_peek(m) for m in peeked]


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    left: int
    origin: str


async def replay(
    url: str, queue: str, *, message_id: str | None = None, limit: int | None = None
) -> ReplayResult:
    """Move messages from a dead-letter (or retry) queue back to their origin queue.

    Args:
        url: the broker.
        queue: ``<queue>.dead`` or ``<queue>.retry.<delay>``.
        message_id: replay only the message(s) with this id; None for every one.
        limit: replay at most this many.

    Raises:
        NotADeadLetterQueue: `queue` is not a queue fleet derives.
    """
    origin = origin_queue(queue)
    if origin is None or not is_derived(queue):
        raise NotADeadLetterQueue(
            f"{queue!r} is not a dead-letter or retry queue "
            f"(they end in '{DEAD_SUFFIX}' or hold '{RETRY_INFIX}')"
        )
    connection = await connect(url, name="fleet dlq replay")
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        publisher = Publisher(
            await (
                await connection.channel(publisher_confirms=True, on_return_raises=True)
            ).get_underlay_channel()
        )
        await channel.basic_qos(prefetch_count=0)
        declared = await channel.queue_declare(queue, passive=True)
        pending = declared.message_count or 0
        replayed = 0
        skipped: list[int] = []
        for _ in range(pending):
            if limit is not None and replayed >= limit:
                break
            message = await channel.basic_get(queue, no_ack=False)
            if not isinstance(message.delivery, Basic.GetOk):
                break
            tag = cast(int, message.delivery.delivery_tag)
            if message_id is not None and message.header.properties.message_id != message_id:
                skipped.append(tag)  # held unacked, so basic_get moves on to the next one
                continue
            await publisher.publish(
                message.body, exchange="", routing_key=origin, properties=_reset(message)
            )
            await channel.basic_ack(tag)
            replayed += 1
        if skipped:
            await channel.basic_nack(max(skipped), multiple=True, requeue=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise NotADeadLetterQueue(f"queue {queue!r} does not exist") from None
    finally:
        await connection.close()
    return ReplayResult(replayed=replayed, left=pending - replayed, origin=origin)


async def purge(url: str, queue: str) -> int:
    """Delete every message of `queue`; returns how many there were."""
    if not is_derived(queue):
        raise NotADeadLetterQueue(f"{queue!r} is not a dead-letter or retry queue")
    connection = await connect(url, name="fleet dlq purge")
    try:
        channel = await (await connection.channel()).get_underlay_channel()
        purged = await channel.queue_purge(queue)
        return purged.message_count or 0
    except aiormq.exceptions.ChannelNotFoundEntity:
        raise NotADeadLetterQueue(f"queue {queue!r} does not exist") from None
    finally:
        await connection.close()


def _reset(message: DeliveredMessage) -> Basic.Properties:
    """The message's own properties, minus its failure history (attempts start over)."""
    original = message.header.properties
    headers = {k: v for k, v in (original.headers or {}).items() if k not in RESET_HEADERS}
    # A per-message TTL is dropped: the message would expire instead of being replayed.
    return copy_properties(original, headers, message_id=original.message_id, expiration=False)
