"""The broker as the bench uses it: a vhost of its own per run, versions for the
report, and purge, depth and fill on the run's queues.

Management calls are blocking (httpx) and happen outside every measurement.
"""

from __future__ import annotations

import secrets
import time
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import aiormq
import httpx
from aiormq.abc import AbstractChannel, AbstractConnection

from tests.bench.fill import fill


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

    def delete_vhost(self, name: str) -> None:
        self._client.delete(f"/api/vhosts/{quote(name, safe='')}")

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
    """One aiormq connection to the run's vhost, for housekeeping between measurements."""

    def __init__(self, connection: AbstractConnection, channel: AbstractChannel):
        self._connection = connection
        self._channel = channel

    @classmethod
    async def open(cls, url: str) -> Queues:
        connection = await aiormq.connect(url)
        channel = await connection.channel(publisher_confirms=False)
        return cls(connection, channel)

    async def close(self) -> None:
        await self._connection.close()

    async def purge(self, *names: str) -> None:
        for name in names:
            await self._channel.queue_purge(name)

    async def depth(self, name: str) -> int:
        """Messages ready in `name` (a passive declare)."""
        declared = await self._channel.queue_declare(name, passive=True)
        return declared.message_count or 0

    async def fill(self, queue: str, count: int, *, tag: str, wait: bool = True) -> None:
        """`count` OrderPlaced messages in `queue`, ids ``<tag>-<i>``; see `fill.fill`."""
        await fill(self._connection, self._channel, queue, count, tag, wait=wait)
