"""Synchronous routes: wait for the event that answers a request.

Each ingress process binds one exclusive, server-named queue to the answering
events' routing keys. An answer is matched to its request by correlation id
(set from the request, kept by every worker on its follow-ons) and event type.
The queue lives and dies with the connection: an answer published while the
ingress is reconnecting is missed, and that request times out (504).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from aiormq.abc import AbstractChannel, DeliveredMessage

from workers.ingress.routes import Route


@dataclass(frozen=True)
class Answer:
    """The event that answered a request."""

    type: str
    message_id: str | None
    body: bytes


class AlreadyWaiting(Exception):
    """Another request with the same correlation id is waiting for its answer."""


class ReplyListener:
    """Receives answering events and hands each to the request waiting for it."""

    def __init__(self, routes: dict[str, Route]):
        self._bindings = sorted(
            {
                (route.reply.exchange, key)
                for route in routes.values()
                if route.reply is not None
                for key in route.reply.routing_keys
            }
        )
        self._waiting: dict[str, tuple[frozenset[str], asyncio.Future[Answer]]] = {}

    @property
    def needed(self) -> bool:
        """Whether any route waits for answers."""
        return bool(self._bindings)

    async def attach(self, channel: AbstractChannel) -> None:
        """Declare and bind this process's answer queue on a new channel, and consume it."""
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        queue = declared.queue
        assert queue is not None
        for exchange, routing_key in self._bindings:
            await channel.queue_bind(queue, exchange, routing_key=routing_key)
        await channel.basic_consume(queue, self._deliver, no_ack=True)

    @contextlib.contextmanager
    def expect(
        self, correlation_id: str, types: frozenset[str]
    ) -> Iterator[asyncio.Future[Answer]]:
        """A future for the first event of `types` correlated to `correlation_id`.

        Raises:
            AlreadyWaiting: a request with this correlation id is waiting already.
        """
        if correlation_id in self._waiting:
            raise AlreadyWaiting(correlation_id)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = (types, future)
        try:
            yield future
        finally:
            del self._waiting[correlation_id]

    async def _deliver(self, message: DeliveredMessage) -> None:
        properties = message.header.properties
        waiting = self._waiting.get(properties.correlation_id or "")
        if waiting is None:
            return  # another process's request, or one that gave up
        types, future = waiting
        if properties.message_type in types and not future.done():
            future.set_result(Answer(properties.message_type, properties.message_id, message.body))
