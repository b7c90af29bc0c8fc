"""Connecting to the broker: one connection per process, named after its job,
with a consume channel and a confirm-mode publish channel. Given several nodes
of a cluster, it connects to the first that answers."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel
from pamqp.common import FieldTable

from topology import BrokerUnreachable
from workers.runtime import frames
from workers.runtime.nodes import NodeRing

#: Errors that mean "the broker went away or is not there": reconnect, do not crash.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)


@dataclass
class Channels:
    """The raw aiormq channels of one connection.

    `consume` carries deliveries and acks; `publish` has publisher confirms and
    raises on returned (unroutable) messages. Separate channels keep a publish
    blocked by flow control from holding back acks.
    """

    connection: AbstractConnection
    consume: AbstractChannel
    publish: AbstractChannel
    #: aio-pika's wrappers of the two, whose close callbacks say a channel died.
    wrappers: tuple[aio_pika.abc.AbstractChannel, ...] = ()


#: Seconds to wait for one node to complete the AMQP handshake before trying the next.
CONNECT_TIMEOUT = 10.0


async def connect(url: str | NodeRing, *, name: str) -> AbstractConnection:
    """Open a connection whose name (shown in the management UI) says who holds it.

    Args:
        url: one AMQP URL, several comma-separated (the nodes of a cluster), or a
            `NodeRing` that remembers which node to try first. Nodes are tried in
            turn; the first that answers is used.
        name: who holds the connection.

    Raises:
        BrokerUnreachable: no node answers, or one refused the login.
    """
    frames.install()  # read frames in bulk (see workers.runtime.frames)
    ring = url if isinstance(url, NodeRing) else NodeRing(url)
    properties: FieldTable = {"connection_name": f"{name} ({socket.gethostname()}:{os.getpid()})"}
    reasons = []
    for candidate in ring.candidates():
        try:
            connection = await aio_pika.connect(
                candidate, client_properties=properties, timeout=CONNECT_TIMEOUT
            )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            # Every node of a cluster shares its users: the next would refuse too.
            raise BrokerUnreachable(
                f"RabbitMQ at {_safe(candidate)} refused the login: {exc}"
            ) from None
        except CONNECTION_ERRORS as exc:
            reasons.append(f"{_safe(candidate)}: {_reason(exc)}")
            continue
        ring.connected(candidate)
        return connection
    if len(reasons) == 1:
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {reasons[0]} "
            "(is it running? start it with `rabbitmq-server -detached`)"
        )
    raise BrokerUnreachable(f"cannot reach any RabbitMQ node: {'; '.join(reasons)}")


async def open_channels(connection: AbstractConnection, *, prefetch: int) -> Channels:
    """A consume channel with `prefetch` and a confirm-mode publish channel."""
    consume = await connection.channel(publisher_confirms=False)
    publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
    raw_consume = await consume.get_underlay_channel()
    await raw_consume.basic_qos(prefetch_count=prefetch)
    return Channels(
        connection, raw_consume, await publish.get_underlay_channel(), (consume, publish)
    )


@asynccontextmanager
async def publishing_channel(url: str, *, name: str) -> AsyncIterator[AbstractChannel]:
    """A short-lived connection with one confirm-mode channel (the CLI, tests, tools)."""
    connection = await connect(url, name=name)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        yield await channel.get_underlay_channel()
    finally:
        await connection.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def first_missing_queue(connection: AbstractConnection, names: Iterable[str]) -> str | None:
    """The first of `names` that does not exist on the broker (a passive declare each,
    on a channel of its own since a miss closes it); None when all do."""
    for name in names:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return name
        finally:
            if not channel.is_closed:
                await channel.close()
    return None
