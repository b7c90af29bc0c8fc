"""A bare AMQP 0-9-1 publisher on a plain socket, for content headers no client library writes.

Client libraries only encode values they can represent (a datetime in range,
text as UTF-8), so hostile properties need the frames built by hand. The
broker passes a message's content header on as it was published, which is
exactly what a worker must survive. Handshake and method frames go through
pamqp; the content header is whatever bytes the test hands in.
"""

from __future__ import annotations

import socket
import struct
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame
from pamqp.constants import FRAME_END
from pamqp.header import ProtocolHeader

#: Property flag bits of Basic.Properties (AMQP 0-9-1, section 4.2.6.1).
FLAGS = {
    "content_type": 1 << 15,
    "content_encoding": 1 << 14,
    "headers": 1 << 13,
    "delivery_mode": 1 << 12,
    "priority": 1 << 11,
    "correlation_id": 1 << 10,
    "reply_to": 1 << 9,
    "expiration": 1 << 8,
    "message_id": 1 << 7,
    "timestamp": 1 << 6,
    "message_type": 1 << 5,
    "user_id": 1 << 4,
    "app_id": 1 << 3,
}


def short_string(raw: bytes) -> bytes:
    """An AMQP short string of exactly these bytes (UTF-8 or not)."""
    return bytes([len(raw)]) + raw


def long_string(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def table(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A field table of (name, type octet, encoded value) entries, written as given."""
    payload = b"".join(short_string(name) + kind + value for name, kind, value in entries)
    return struct.pack(">I", len(payload)) + payload


class RawPublisher:
    """Publishes with publisher confirms, each content header given as raw property bytes."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self._socket = socket.create_connection((parts.hostname, parts.port or 5672), 10)
        self._buffer = b""
        self._socket.sendall(ProtocolHeader().marshal())
        self._expect(commands.Connection.Start)
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        self._send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "fleet-tests raw publisher"},
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
                locale="en_US",
            ),
        )
        tune = self._expect(commands.Connection.Tune)
        self._send(0, commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0))
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self._send(0, commands.Connection.Open(virtual_host=vhost))
        self._expect(commands.Connection.OpenOk)
        self._send(1, commands.Channel.Open())
        self._expect(commands.Channel.OpenOk)
        self._send(1, commands.Confirm.Select())
        self._expect(commands.Confirm.SelectOk)

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: dict[str, bytes],
    ) -> None:
        """Publish `body` with the given properties, each already encoded; wait for the ack.

        `properties` maps a property name (see FLAGS) to its wire bytes: a short
        string with its length octet, a table with its length, 8 timestamp bytes.
        """
        self._send(1, commands.Basic.Publish(exchange=exchange, routing_key=routing_key))
        flags = 0
        encoded = b""
        for name, bit in FLAGS.items():  # wire order is flag order
            if name in properties:
                flags |= bit
                encoded += properties[name]
        payload = struct.pack(">HHQH", 60, 0, len(body), flags) + encoded
        self._raw(2, 1, payload)
        self._raw(3, 1, body)
        confirm = self._read()
        if not isinstance(confirm, commands.Basic.Ack):
            raise RuntimeError(f"the broker did not ack the publish: {confirm!r}")

    def close(self) -> None:
        try:
            self._send(0, commands.Connection.Close(200, "bye", class_id=0, method_id=0))
            self._expect(commands.Connection.CloseOk)
        finally:
            self._socket.close()

    def _send(self, channel: int, method: Any) -> None:
        self._socket.sendall(frame.marshal(method, channel))

    def _raw(self, kind: int, channel: int, payload: bytes) -> None:
        head = struct.pack(">BHI", kind, channel, len(payload))
        self._socket.sendall(head + payload + bytes([FRAME_END]))

    def _expect(self, kind: type) -> Any:
        got = self._read()
        if not isinstance(got, kind):
            raise RuntimeError(f"expected {kind.__name__}, got {got!r}")
        return got

    def _read(self) -> Any:
        while True:
            if len(self._buffer) >= 7:
                size = struct.unpack_from(">I", self._buffer, 3)[0]
                if len(self._buffer) >= 8 + size:
                    used, _, value = frame.unmarshal(self._buffer)
                    self._buffer = self._buffer[used:]
                    if isinstance(value, commands.Channel.Close | commands.Connection.Close):
                        raise RuntimeError(f"the broker closed: {value.reply_text}")
                    return value
            chunk = self._socket.recv(65536)
            if not chunk:
                raise RuntimeError("the broker closed the connection")
            self._buffer += chunk

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
