"""The ingress's broker connection: kept up in the background, publishing with confirms.

`BrokerLink.run` connects, opens one confirm-mode channel and reconnects with
backoff whenever the connection or channel drops. `publish` either returns
after the broker confirmed the message without returning it, or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiormq
import structlog
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel

from topology import BrokerUnreachable
from workers.errors import PublishFailed
from workers.runtime.connection import CONNECTION_ERRORS, connect
from workers.runtime.outgoing import Outgoing
from workers.runtime.publisher import Publisher

log = structlog.get_logger("fleet.ingress")

#: Errors during a publish that mean the event's fate is unknown: answer 503.
_LOST: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, aiormq.exceptions.ChannelClosed)
_UNREACHABLE: tuple[type[BaseException], ...] = (BrokerUnreachable, *CONNECTION_ERRORS)
#: A refused declaration (the answer queue's exchange is missing) is retried too.
_UNUSABLE: tuple[type[BaseException], ...] = (*_UNREACHABLE, aiormq.exceptions.ChannelClosed)


class BrokerDown(Exception):
    """No usable broker connection, or it dropped before the confirm (HTTP 503)."""


class BrokerLink:
    """One connection and confirm-mode channel, reconnected in the background."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "fleet ingress",
        max_backoff: float = 5.0,
        on_open: Callable[[AbstractChannel], Awaitable[None]] | None = None,
    ):
        self.url = url
        self.name = name
        self.max_backoff = max_backoff
        #: Called with each new channel before the link is ready (answer queues).
        self.on_open = on_open
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publisher: Publisher | None = None
        self._lost = asyncio.Event()
        #: Set while connected (tests and start-up wait on it).
        self.connected = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Whether a publish can go out now."""
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a connection up until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                await self._open()
            except _UNUSABLE as exc:
                failures += 1
                delay = min(self.max_backoff, 0.2 * 2 ** min(failures, 8))
                log.warning("ingress.broker_unreachable", error=str(exc), retry_in=delay)
                await _wait(stop, delay)
                continue
            failures = 0
            log.info("ingress.broker_connected")
            self.connected.set()
            await _wait_any(stop, self._lost)
            self.connected.clear()
            if not stop.is_set():
                log.warning("ingress.broker_connection_lost")
            await self._close()
        await self._close()

    async def publish(self, message: Outgoing) -> None:
        """Publish and wait for the confirm.

        Raises:
            PublishFailed: the broker returned the message (unroutable) or nacked it.
            BrokerDown: no connection, or it dropped before the confirm.
        """
        publisher = self._publisher
        if publisher is None or not self.ready:
            raise BrokerDown("the broker is unreachable")
        try:
            await publisher.publish_outgoing(message)
        except aiormq.exceptions.ChannelNotFoundEntity:
            # The channel is gone with it: reconnect.
            self._lost.set()
            raise PublishFailed(f"exchange {message.exchange!r} does not exist") from None
        except _LOST as exc:
            self._lost.set()
            raise BrokerDown(f"the broker connection dropped before the confirm: {exc}") from None

    async def _open(self) -> None:
        self._lost = asyncio.Event()
        lost = self._lost
        connection = await connect(self.url, name=self.name)
        try:
            connection.close_callbacks.add(lambda *_: lost.set())
            wrapper = await connection.channel(publisher_confirms=True, on_return_raises=True)
            wrapper.close_callbacks.add(lambda *_: lost.set())
            channel = await wrapper.get_underlay_channel()
            if self.on_open is not None:
                await self.on_open(channel)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._channel = channel
        self._publisher = Publisher(channel, app_id="fleet.ingress")

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = None
        self._publisher = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await connection.close()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _wait_any(*events: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
