"""The broker as the bench uses it: a vhost of its own per run, versions for the
report, and purge, depth and fill on the run's queues.

Management calls are blocking (httpx) and happen outside every measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import aiormq
import httpx
from aiormq.abc import AbstractChannel, AbstractConnection

from tests.bench.fill import fill

T = TypeVar("T")

#: What a broker going away raises from an aiormq connection.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
)
RECONNECT_SECONDS = 120.0


class Management:
    """The RabbitMQ management API (basic auth from the URL, default guest/guest)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self._client = httpx.Client(
            base_url=f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}",
            auth=(parts.username or "guest", parts.password or "guest"),
            timeout=10,
        )

    def overview(self) -> dict[str, Any]:
        """/api/overview: rabbitmq_version, erlang_version, ..."""
        response = self._client.get("/api/overview")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def create_vhost(self, prefix: str, user: str) -> str:
        """A new vhost named ``<prefix>-<time>-<random>``, open to `user`."""
        name = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self._client.put(f"/api/vhosts/{quote(name, safe='')}").raise_for_status()
        self._client.put(
            f"/api/permissions/{quote(name, safe='')}/{quote(user, safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        return name

    def delete_vhost(self, name: str, attempts: int = 10) -> bool:
        """Delete a vhost, retrying while the API is away; False if it could not."""
        for attempt in range(attempts):
            try:
                response = self._client.delete(f"/api/vhosts/{quote(name, safe='')}")
                return response.status_code in (204, 404)
            except httpx.HTTPError:
                time.sleep(min(2.0, 0.2 * 2**attempt))
        return False

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def vhost_url(amqp_url: str, vhost: str) -> str:
    """`amqp_url` pointed at `vhost`."""
    parts = urlsplit(amqp_url)
    return parts._replace(path="/" + quote(vhost, safe="")).geturl()


class Queues:
    """One aiormq connection to the run's vhost, for housekeeping between measurements.

    The broker may be restarted under a run (on a shared machine, other test
    suites do): purge and depth reconnect and try again; a fill that fails
    fails its measurement, and the next call reconnects.
    """

    def __init__(self, url: str):
        self.url = url
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    @classmethod
    async def open(cls, url: str) -> Queues:
        queues = cls(url)
        await queues._connect()
        return queues

    @property
    def interrupted(self) -> bool:
        """Whether the connection dropped (the broker restarted) since it was opened."""
        return self._connection is None or self._connection.is_closed

    async def close(self) -> None:
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    async def purge(self, *names: str) -> None:
        async def purge_all(channel: AbstractChannel) -> None:
            for name in names:
                await channel.queue_purge(name)

        await self._retrying(purge_all)

    async def depth(self, name: str) -> int:
        """Messages ready in `name` (a passive declare)."""
        declared = await self._retrying(lambda channel: channel.queue_declare(name, passive=True))
        return declared.message_count or 0

    async def fill(self, queue: str, count: int, *, tag: str, wait: bool = True) -> None:
        """`count` OrderPlaced messages in `queue`, ids ``<tag>-<i>``; see `fill.fill`."""
        connection, channel = await self._open_channel()
        await fill(connection, channel, queue, count, tag, wait=wait)

    async def _retrying(self, operation: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        _, channel = await self._open_channel()
        try:
            return await operation(channel)
        except BROKER_ERRORS:
            await self._connect()
            _, channel = await self._open_channel()
            return await operation(channel)

    async def _open_channel(self) -> tuple[AbstractConnection, AbstractChannel]:
        if self._connection is None or self._channel is None or self._channel.is_closed:
            await self._connect()
        assert self._connection is not None
        assert self._channel is not None
        return self._connection, self._channel

    async def _connect(self) -> None:
        """(Re)connect, waiting up to RECONNECT_SECONDS for the broker to come back."""
        with contextlib.suppress(*BROKER_ERRORS):
            await self.close()
        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                self._connection = await aiormq.connect(self.url)
                self._channel = await self._connection.channel(publisher_confirms=False)
                return
            except BROKER_ERRORS:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
