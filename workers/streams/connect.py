"""An AMQP URL → the stream protocol's connection to the same broker, user and vhost,
with the errors an operator can act on."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from rstream import Consumer, OnClosedErrorInfo

from workers.errors import WorkerError

#: The stream plugin's port; the same host as the AMQP URL's.
STREAM_PORT = 5552


class StreamUnavailable(WorkerError):
    """The stream protocol cannot be reached, or the stream does not exist."""


@dataclass(frozen=True)
class StreamEndpoint:
    """Where the stream protocol listens, and as whom to log in."""

    host: str
    port: int
    vhost: str
    username: str
    password: str

    @classmethod
    def from_amqp_url(cls, url: str, port: int = STREAM_PORT) -> StreamEndpoint:
        """``amqp://u:p@host:5672/vh`` → host:5552, vhost ``vh``, user u (the AMQP one)."""
        parts = urlsplit(url.split(",")[0].strip())
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            vhost=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
            username=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
        )

    def consumer(
        self,
        name: str = "fleet stream",
        on_close: Callable[[OnClosedErrorInfo], Awaitable[None] | None] | None = None,
    ) -> Consumer:
        """An rstream consumer (not yet started) on this endpoint, its connections named
        `name`; `on_close` is told when a connection closes or a stream changes (rstream
        itself does not reconnect: its recovery is off by default)."""
        return Consumer(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            vhost=self.vhost,
            connection_name=name,
            max_retries=1,
            on_close_handler=on_close,
        )

    async def start(self, consumer: Consumer) -> None:
        """Connect, or say why not in one line.

        Raises:
            StreamUnavailable: nothing listens on the stream port (the plugin is off),
                or the broker refused the login or the vhost.
        """
        try:
            await consumer.start()
        except (ConnectionError, OSError) as exc:
            refused = isinstance(exc, ConnectionRefusedError) or (
                bool(exc.args) and exc.args[0] == errno.ECONNREFUSED
            )
            if refused:
                raise StreamUnavailable(
                    f"nothing answers the stream protocol on {self.host}:{self.port}: "
                    "enable RabbitMQ's stream plugin (rabbitmq-plugins enable rabbitmq_stream)"
                ) from None
            raise StreamUnavailable(
                f"cannot reach the stream protocol on {self.host}:{self.port}: {exc}"
            ) from None
        except Exception as exc:  # rstream raises ServerError and others for a refused login
            raise StreamUnavailable(
                f"{self.host}:{self.port} refused user {self.username!r} on vhost "
                f"{self.vhost!r}: {exc or type(exc).__name__}"
            ) from None

    async def require(self, consumer: Consumer, stream: str) -> None:
        """Raises StreamUnavailable naming the stream when it does not exist."""
        if not await consumer.stream_exists(stream):
            raise StreamUnavailable(
                f"no stream {stream!r} in vhost {self.vhost!r} (`fleet topology apply` "
                "declares the file's streams)"
            )
