"""One active reader per stream and consumer name across a worker's replicas.

A replica reads a stream (a partition) only while it owns an exclusive queue named
after it and the consumer (`topology.names.stream_lock_queue`), declared on its AMQP
connection. RabbitMQ refuses the same exclusive queue to any other connection
(RESOURCE_LOCKED) and deletes it when its owner's connection closes, so when a
replica dies, the next replica to try takes the stream over.

Why not the stream protocol's own single active consumer: it arrived in RabbitMQ
3.11, and fleet runs on 3.10 too. This works on every version, and ties the
right to read to the connection that publishes the worker's dead letters.
"""

from __future__ import annotations

import aiormq
from aio_pika.abc import AbstractConnection

from topology.names import stream_lock_queue


class StreamLocks:
    """The locks one replica holds, on one connection.

    Args:
        connection: the replica's AMQP connection (the locks end with it).
        consumer: the consumer name the locks are named after.
    """

    def __init__(self, connection: AbstractConnection, consumer: str):
        self._connection = connection
        self._consumer = consumer
        self.held: set[str] = set()

    async def take(self, stream: str) -> bool:
        """Whether this replica now reads `stream` (False: another one does)."""
        if stream in self.held:
            return True
        channel = await self._connection.channel()
        try:
            await channel.declare_queue(
                stream_lock_queue(stream, self._consumer),
                exclusive=True,
                auto_delete=True,
                # A classic queue whatever the vhost's default: exclusive queues are.
                arguments={"x-queue-type": "classic"},
            )
        except aiormq.exceptions.ChannelLockedResource:
            return False  # the channel is closed by the refusal
        await channel.close()
        self.held.add(stream)
        return True
