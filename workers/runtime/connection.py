"""Connecting to the broker: one connection per process, named after its job,
with a consume channel and a confirm-mode publish channel. Given several nodes
of a cluster, it connects to the first that answers.

An ``amqps://`` URL connects over TLS with the CA and client certificate its
query names (see `topology.tls`); a refused login, a failed TLS handshake or a
TLS file that cannot be read is `BrokerRefused`: trying again would not help."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel
from pamqp.common import FieldTable

from topology import BrokerRefused, BrokerUnreachable
from topology.tls import handshake_problem, tls_files, unreadable_file
from workers.runtime import fastpath
from workers.runtime.fastpath import frames, routing
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
        BrokerRefused: a node refused the login or failed the TLS handshake (every
            node of a cluster shares its users and CA, so trying again or elsewhere
            would not help), or a TLS file the URL names cannot be read.
        BrokerUnreachable: no node answers.
    """
    if fastpath.enabled():
        frames.install()  # read frames in bulk (see workers.runtime.fastpath)
    ring = url if isinstance(url, NodeRing) else NodeRing(url)
    properties: FieldTable = {"connection_name": f"{name} ({socket.gethostname()}:{os.getpid()})"}
    reasons = []
    for candidate in ring.candidates():
        unreadable = unreadable_file(tls_files(candidate))
        if unreadable is not None:
            raise BrokerRefused(f"cannot connect to {_safe(candidate)}: {unreadable}")
        try:
            with frames.opening() as receivers:
                connection = await aio_pika.connect(
                    candidate, client_properties=properties, timeout=CONNECT_TIMEOUT
                )
        except aiormq.exceptions.ProbableAuthenticationError as exc:
            # Every node of a cluster shares its users: the next would refuse too.
            raise BrokerRefused(
                f"RabbitMQ at {_safe(candidate)} refused the login of user "
                f"{_user(candidate)!r}: {_reason(exc)}"
            ) from None
        except CONNECTION_ERRORS as exc:
            tls = handshake_problem(f"RabbitMQ at {_safe(candidate)}", exc)
            if tls is not None:
                raise BrokerRefused(tls) from None
            reasons.append(f"{_safe(candidate)}: {_reason(exc)}")
            continue
        ring.connected(candidate)
        if receivers and connection.transport is not None:
            # Its consume channel's deliveries can then skip aiormq's plumbing.
            routing.attach(connection.transport.connection, receivers[-1])
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
    routing.route(raw_consume)  # deliveries straight from the frame buffer, where it can
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
    """The URL without its password, for messages and logs; the query (the TLS files'
    paths) is kept, as it holds no secret."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _user(url: str) -> str:
    parts = urlsplit(url)
    return unquote(parts.username) if parts.username is not None else "guest"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def first_missing_queue(connection: AbstractConnection, names: Iterable[str]) -> str | None:
    """The first of `names` that does not exist on the broker (a passive declare each,
    on a channel of its own since a miss closes it); None when all do."""
    return await _first_missing(connection, names, "queue")


async def first_missing_exchange(
    connection: AbstractConnection, names: Iterable[str]
) -> str | None:
    """The first of `names` that is not an exchange on the broker; None when all are."""
    return await _first_missing(connection, names, "exchange")


async def _first_missing(
    connection: AbstractConnection, names: Iterable[str], kind: str
) -> str | None:
    # A passive declare needs no permission, so a least-privilege user may check too.
    for name in names:
        channel = await connection.channel()
        try:
            if kind == "queue":
                await channel.declare_queue(name, passive=True)
            else:
                await channel.declare_exchange(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return name
        finally:
            if not channel.is_closed:
                await channel.close()
    return None
