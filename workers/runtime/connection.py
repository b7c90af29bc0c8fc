"""Connecting to the broker: one connection per process, named after its job,
with a consume channel and a confirm-mode publish channel."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel
from pamqp.common import FieldTable

from topology import BrokerUnreachable

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


async def connect(url: str, *, name: str) -> AbstractConnection:
    """Open a connection whose name (shown in the management UI) says who holds it.

    Raises:
        BrokerUnreachable: nothing answers at `url`, or it refused the login.
    """
    properties: FieldTable = {"connection_name": f"{name} ({socket.gethostname()}:{os.getpid()})"}
    try:
        return await aio_pika.connect(url, client_properties=properties)
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        raise BrokerUnreachable(f"RabbitMQ at {_safe(url)} refused the login: {exc}") from None
    except CONNECTION_ERRORS as exc:
        raise BrokerUnreachable(
            f"cannot reach RabbitMQ at {_safe(url)}: {_reason(exc)} "
            "(is it running? start it with `rabbitmq-server -detached`)"
        ) from None


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
