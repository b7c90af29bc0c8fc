"""A publishing link to the broker: kept up in the background, failing over
between the nodes of a cluster, publishing with confirms.

`BrokerLink.run` connects to the first node that answers, opens one
confirm-mode channel, and when the connection or channel drops connects again,
starting from the next node. `publish` returns only after the broker confirmed
the message without returning it. A publish whose connection dropped before
the confirm is sent again, with the same message id, once the link is back (on
another node if its node died): downstream dedupe makes the copy harmless. It
raises `BrokerDown` only when no node is reachable, or none confirmed within
`failover_timeout`: an unconfirmed publish is retried or reported, never
silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiormq
import structlog
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel

from topology import BrokerRefused, BrokerUnreachable
from workers.errors import PublishFailed, PublishNacked
from workers.runtime.connection import CONNECTION_ERRORS
from workers.runtime.nodes import NodeRing
from workers.runtime.outgoing import Outgoing
from workers.runtime.publisher import Publisher
from workers.runtime.reconnect import Backoff, Connected, keep_connected
from workers.runtime.waiting import wait_any

log = structlog.get_logger("fleet.link")

#: Seconds before a nacked publish is sent again.
NACK_PAUSE = 0.2

#: Errors during a publish that mean the message's fate is unknown: send it again.
_LOST: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, aiormq.exceptions.ChannelClosed)
_LOST_OR_CANCELLED: tuple[type[BaseException], ...] = (*_LOST, asyncio.CancelledError)


class BrokerDown(Exception):
    """No node is reachable, or none confirmed the message in time (HTTP 503)."""


class BrokerLink:
    """One connection and confirm-mode channel, reconnected (to another node) in the background.

    Args:
        url: one AMQP URL, or several comma-separated (the nodes of a cluster).
        name: the connection's name in the management UI.
        max_backoff: the longest pause between rounds of connection attempts
            while no node answers.
        failover_timeout: how long a publish may wait for the link to come back
            (and then be sent again) before it fails with `BrokerDown`.
        on_open: called with each new channel before the link is ready (the
            ingress binds its answer queue there).
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "fleet ingress",
        max_backoff: float = 5.0,
        failover_timeout: float = 15.0,
        on_open: Callable[[AbstractChannel], Awaitable[None]] | None = None,
    ):
        self.nodes = NodeRing(url)
        self.on_open = on_open
        self.name = name
        self.max_backoff = max_backoff
        self.failover_timeout = failover_timeout
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._lost = asyncio.Event()
        #: Set while connected (tests and start-up wait on it).
        self.connected = asyncio.Event()
        #: Set once a round of connection attempts has ended, either way; cleared on a loss.
        self._settled = asyncio.Event()
        self._unreachable = False
        #: Seconds from each lost connection to the next open one (the failover times).
        self.failovers: list[float] = []
        #: Seconds from each lost connection to the next confirmed publish: how long
        #: publishing stalled (a quorum queue may nack until it has a new leader).
        self.stalls: list[float] = []
        self._stalled_since: float | None = None
        #: Publishes sent again after a lost connection or a nack.
        self.resent = 0
        #: Why the last round of connection attempts was refused (a login or TLS
        #: mistake), for a one-shot publisher to report; None once connected.
        self.refused: BrokerRefused | None = None

    @property
    def ready(self) -> bool:
        """Whether a publish can go out now."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
            and not self._lost.is_set()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a connection up until `stop` is set (`reconnect.keep_connected`)."""
        try:
            await keep_connected(
                self.nodes,
                lambda connection, connected: self._session(connection, connected, stop),
                name=self.name,
                stop=stop,
                backoff=Backoff(base=0.2, cap=self.max_backoff),
                # The ingress must come back on its own once the broker lets it in.
                retry_refused=True,
                fields={"name": self.name},
                on_unreachable=self._unreachable_now,
            )
        finally:
            await self._close()

    def _unreachable_now(self, error: BrokerUnreachable) -> None:
        """A round of connection attempts failed: publishes waiting for the link fail now."""
        self.refused = error if isinstance(error, BrokerRefused) else None
        self._unreachable = True
        self._settled.set()

    async def _session(
        self, connection: AbstractConnection, connected: Connected, stop: asyncio.Event
    ) -> bool:
        """One connection's confirm-mode channel, until it is lost (True) or `stop`."""
        self._lost = lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            wrapper = await connection.channel(publisher_confirms=True, on_return_raises=True)
            wrapper.close_callbacks.add(lambda *_: lost.set())
            channel = await wrapper.get_underlay_channel()
            if self.on_open is not None:
                await self.on_open(channel)
        except aiormq.exceptions.ChannelClosed as exc:
            # A refused declaration in `on_open` (an answer queue's exchange is
            # missing) is retried like an outage.
            self._unreachable_now(BrokerUnreachable(f"the broker refused the set-up: {exc}"))
            return True
        self._connection, self._channel, self._publisher = connection, channel, Publisher(channel)
        self.refused = None
        self._unreachable = False
        failover = connected.began()
        if failover is not None:
            self.failovers.append(failover)
        else:
            log.debug("link.broker_connected", name=self.name)
        self.connected.set()
        self._settled.set()
        await wait_any(stop, lost)
        self.connected.clear()
        self._settled.clear()
        if not stop.is_set():
            self._stalled_since = self._stalled_since or time.monotonic()
            log.warning("broker.connection_lost", name=self.name)
        await self._close()
        return not stop.is_set()

    async def publish(self, message: Outgoing) -> None:
        """Publish and wait for the confirm, sending again after a failover.

        Raises:
            PublishFailed: the broker returned the message (unroutable).
            BrokerDown: no node is reachable, or none confirmed (nacks included)
                within `failover_timeout`.
        """
        deadline = time.monotonic() + self.failover_timeout
        attempt = 0
        while True:
            # The loss to report is this connection's: by the time a publish fails,
            # `run` may already have opened the next one.
            publisher, lost = self._publisher, self._lost
            if publisher is None or not self.ready:
                await self._await_link(deadline)
                continue
            attempt += 1
            if attempt > 1:
                self.resent += 1
            try:
                await publisher.publish_outgoing(message)
                if self._stalled_since is not None:
                    self.stalls.append(time.monotonic() - self._stalled_since)
                    self._stalled_since = None
                return
            except aiormq.exceptions.ChannelNotFoundEntity:
                # The channel is gone with it: reconnect.
                lost.set()
                raise PublishFailed(f"exchange {message.exchange!r} does not exist") from None
            except PublishNacked as exc:
                # The broker took no responsibility (a quorum queue electing a new
                # leader): send it again shortly, until the deadline.
                if time.monotonic() >= deadline:
                    raise BrokerDown(f"no broker node confirmed the message: {exc}") from None
                log.debug("link.publish_resent", message_id=message.message_id, error=str(exc))
                await asyncio.sleep(NACK_PAUSE)
            except _LOST_OR_CANCELLED as exc:
                if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside():
                    raise
                # aiormq cancels the confirms still pending when a connection dies
                # (a reset, say): as unknown a fate as any other loss.
                lost.set()
                if time.monotonic() >= deadline:
                    raise BrokerDown(
                        f"the broker connection dropped before the confirm: {exc!r}"
                    ) from None
                log.debug("link.publish_resent", message_id=message.message_id, error=repr(exc))

    async def _await_link(self, deadline: float) -> None:
        """Wait for the link to be back, or raise BrokerDown if no node is reachable."""
        while not self.ready:
            if self._unreachable and self._settled.is_set():
                raise BrokerDown("the broker is unreachable")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerDown(f"no broker node confirmed within {self.failover_timeout:g}s")
            # Woken when a round of attempts ends; a short poll covers the loss itself,
            # which is noticed by `run` a moment after the publish saw it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), min(left, 0.05))

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._publisher = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await connection.close()


def _cancelled_from_outside() -> bool:
    """Whether the running task itself is being cancelled (not merely a future it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
