"""What the failures page changes: replay, dry-run, edit-and-replay, discard, purge.

Replay is `fleet dlq replay`'s recipe for a chosen set of messages: each one is
published back to its origin queue through the default exchange (so only that
queue sees it), its failure history removed, with a publisher confirm; only
then is the parked copy acknowledged. The messages not chosen are never
acknowledged and return to the queue, in order, when the channel closes (see
`browse`). An interrupted replay loses nothing: at worst a message is in both
queues, and the worker's dedupe makes the second delivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from aio_pika.abc import AbstractConnection
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from contracts import ContractError, decode, lookup
from topology.names import origin_queue
from workers.console.browse import MAX_PREFETCH, QueueNotFound, returned
from workers.console.failures import message_key
from workers.dlq import RESET_HEADERS
from workers.runtime import headers as h
from workers.runtime.deadletter import copy_properties
from workers.runtime.publisher import Publisher


@dataclass(frozen=True)
class Plan:
    """What a replay would do, shown before it runs (the dry run)."""

    queue: str
    origin: str
    message_ids: list[str | None]
    removed_headers: list[str]
    edited: int = 0

    def lines(self) -> list[str]:
        count = len(self.message_ids)
        lines = [
            f"{count} message(s) from {self.queue} would be published to queue {self.origin!r} "
            f"(default exchange, routing key {self.origin!r}) with a confirm, then removed "
            f"from {self.queue}.",
        ]
        if self.removed_headers:
            lines.append(
                "Headers removed, so attempts start over: " + ", ".join(self.removed_headers)
            )
        if self.edited:
            lines.append(f"{self.edited} with an edited body, validated against its contract.")
        return lines


def plan_replay(queue: str, messages: list[tuple[str | None, Mapping[str, Any]]]) -> Plan:
    """The dry run of replaying these (message id, headers) from `queue`."""
    origin = origin_queue(queue) or queue
    removed = sorted({k for _, headers in messages for k in headers if k in RESET_HEADERS})
    return Plan(queue, origin, [mid for mid, _ in messages], removed)


class InvalidEdit(ValueError):
    """An edited body does not decode into its message's contract."""


def validate(message_type: str | None, headers: Mapping[str, Any], body: bytes) -> None:
    """Check an edited body against the message's contract (its `type` and `version`).

    Raises:
        InvalidEdit: no contract is known for the type, or the body does not fit it.
    """
    if not message_type:
        raise InvalidEdit("the message has no `type` property: there is no contract to check")
    version = headers.get(h.VERSION, 1)
    try:
        decode(lookup(message_type, int(version)), body)
    except (ContractError, TypeError, ValueError) as error:
        raise InvalidEdit(str(error)) from None


@dataclass
class Done:
    """What an action did."""

    count: int
    message_ids: list[str | None] = field(default_factory=list)


async def replay(
    connection: AbstractConnection,
    queue: str,
    keys: set[str],
    *,
    bodies: Mapping[str, bytes] | None = None,
    wait: float = 10.0,
) -> Done:
    """Send the messages of `queue` with these keys back to its origin queue (a body
    in `bodies`, by key, replaces the message's own)."""
    origin = origin_queue(queue)
    if origin is None:
        raise QueueNotFound(f"{queue!r} is not a dead-letter or retry queue")
    publisher = Publisher(
        await (
            await connection.channel(publisher_confirms=True, on_return_raises=True)
        ).get_underlay_channel()
    )
    bodies = bodies or {}

    async def resend(message: DeliveredMessage, key: str) -> None:
        await publisher.publish(
            bodies.get(key, message.body),
            exchange="",
            routing_key=origin,
            properties=reset(message.header.properties),
        )

    return await _settle(connection, queue, keys, resend, wait)


async def discard(
    connection: AbstractConnection, queue: str, keys: set[str], *, wait: float = 10.0
) -> Done:
    """Delete the messages of `queue` with these keys; the others stay, in order."""

    async def nothing(message: DeliveredMessage, key: str) -> None:
        return None

    return await _settle(connection, queue, keys, nothing, wait)


async def _settle(
    connection: AbstractConnection, queue: str, keys: set[str], act: Any, wait: float
) -> Done:
    """Read `queue` from its head; for each message with a wanted key, `act` on it and
    acknowledge it; leave the rest unacknowledged, so that they return in order."""
    channel = await (await connection.channel()).get_underlay_channel()
    done = Done(0)
    try:
        try:
            declared = await channel.queue_declare(queue, passive=True)
        except Exception as error:  # aiormq's ChannelNotFoundEntity
            raise QueueNotFound(f"queue {queue!r} does not exist") from error
        depth = declared.message_count or 0
        if depth == 0 or not keys:
            return done  # (nothing held: nothing to wait for)
        await channel.basic_qos(prefetch_count=depth if depth <= MAX_PREFETCH else 0)
        inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()

        async def on_message(message: DeliveredMessage) -> None:
            inbox.put_nowait(message)

        await channel.basic_consume(queue, on_message, no_ack=False)
        remaining = set(keys)
        for _ in range(depth):
            if not remaining:
                break
            try:
                message = await asyncio.wait_for(inbox.get(), wait)
            except TimeoutError:
                break
            props = message.header.properties
            key = message_key(props.message_id, message.body, dict(props.headers or {}))
            if key not in keys:
                continue
            await act(message, key)
            await channel.basic_ack(cast(int, cast(Basic.Deliver, message.delivery).delivery_tag))
            remaining.discard(key)
            done.count += 1
            done.message_ids.append(props.message_id)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    await returned(connection, queue, depth - done.count)
    return done


def reset(original: Basic.Properties) -> Basic.Properties:
    """The message's own properties minus its failure history, as `fleet dlq replay`
    sends it (attempts start over; a per-message TTL is dropped)."""
    headers = {k: v for k, v in (original.headers or {}).items() if k not in RESET_HEADERS}
    return copy_properties(original, headers, message_id=original.message_id, expiration=False)
