"""Reading AMQP frames from the socket in bulk.

aiormq's `FrameReceiver` reads every frame with three awaited `readexactly`
calls into a fresh BytesIO under a lock: a delivery is three frames, so a
consumer spent more time getting bytes off the stream than decoding them (a
py-spy profile of the drain benchmark put the receiver at 40% of the worker's
CPU, pamqp's decoding at 26% of it). `BufferedFrameReceiver` reads whatever
the socket holds (up to `READ_SIZE`) and cuts every complete frame out of that
buffer, awaiting only when no complete frame is left. A delivery's frames are
decoded by `decoding.decode_frame`, every other frame by pamqp, and errors map
to the same aiormq exceptions.

`install()` makes aiormq use it for every connection this process opens
(aiormq looks the class up when it connects). It checks the aiormq it is
given: with a receiver of another shape it leaves aiormq as it is.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import aiormq.connection
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp.exceptions import PAMQPException

from workers.runtime.fastpath.decoding import decode_frame

#: Bytes asked of the socket per read: many deliveries' worth.
READ_SIZE = 256 * 1024
#: Frame type (1 byte), channel (2), payload size (4); the payload; the end octet.
_HEADER = struct.Struct(">BHI")
_HEADER_SIZE = _HEADER.size
_FRAME_END = 0xCE

_Original: Any = aiormq.connection.FrameReceiver


class BufferedFrameReceiver(_Original):  # type: ignore[misc]
    """aiormq's FrameReceiver, reading the socket in bulk."""

    reader: asyncio.StreamReader
    started: bool

    def __init__(self, reader: asyncio.StreamReader):
        super().__init__(reader)
        self._buffer = bytearray()
        self._offset = 0

    async def get_frame(self) -> tuple[int, int, Any]:
        while True:
            data = self._cut()
            if data is not None:
                try:
                    return decode_frame(data)
                except (PAMQPException, ValueError, struct.error, IndexError) as e:
                    raise InvalidFrameError(f"{type(e).__name__}: {e}") from e
            await self._fill()

    def _cut(self) -> bytes | None:
        """The next complete frame's bytes, or None until more arrive."""
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < _HEADER_SIZE:
            return None
        if not self.started:
            if buffer.startswith(b"AMQP", offset):
                raise ProtocolSyntaxError("Unexpected AMQP protocol header")
            self.started = True
        _, _, size = _HEADER.unpack_from(buffer, offset)
        end = offset + _HEADER_SIZE + size + 1
        if end > len(buffer):
            return None
        if buffer[end - 1] != _FRAME_END:
            raise InvalidFrameError(f"frame end octet missing: {bytes(buffer[offset:end])!r}")
        data = bytes(buffer[offset:end])
        if end == len(buffer):
            buffer.clear()
            self._offset = 0
        else:
            self._offset = end
        return data

    async def _fill(self) -> None:
        """Read what the socket holds, keeping the unread tail of the buffer."""
        reader = self.reader
        if reader.at_eof():
            if self._offset < len(self._buffer):
                raise AMQPConnectionError(
                    "Server connection unexpectedly closed in the middle of a frame"
                )
            raise StopAsyncIteration
        try:
            chunk = await reader.read(READ_SIZE)
        except ConnectionRefusedError as e:
            raise AMQPConnectionError(f"Server connection refused: {e!r}") from e
        except ConnectionResetError as e:
            raise AMQPConnectionError(f"Server connection reset: {e!r}") from e
        except ConnectionError as e:
            raise AMQPConnectionError(f"Server connection error: {e!r}") from e
        except OSError as e:
            raise AMQPConnectionError(f"Server communication error: {e!r}") from e
        if not chunk:
            # The stream ended while a frame was awaited: as aiormq's own receiver
            # says then (its readexactly fails), the connection was lost.
            raise AMQPConnectionError("Server connection unexpectedly closed")
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += chunk


def install() -> bool:
    """Make aiormq read frames with `BufferedFrameReceiver`; whether it is in use."""
    current = aiormq.connection.FrameReceiver
    if current is BufferedFrameReceiver:
        return True
    if current is not _Original or not hasattr(current, "get_frame"):
        return False  # an aiormq this was not written against
    aiormq.connection.FrameReceiver = BufferedFrameReceiver  # type: ignore[misc]
    return True
