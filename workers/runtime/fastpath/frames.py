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

On a routed channel (`routing`), a delivery whose frames are all in the
buffer is not returned at all: it goes to its consumer from here.

`install()` makes aiormq use it for every connection this process opens
(aiormq looks the class up when it connects). It checks the aiormq it is
given: with a receiver of another shape it leaves aiormq as it is. `opening()`
collects the receivers a connect creates, so the caller can `routing.attach`
the right one to its connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import aiormq.connection
from aiormq.abc import DeliveredMessage
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from pamqp.exceptions import PAMQPException

from workers.runtime.fastpath.decoding import content_header, decode_frame, deliver
from workers.runtime.fastpath.routing import Route

#: Bytes asked of the socket per read: many deliveries' worth.
READ_SIZE = 256 * 1024
#: Frame type (1 byte), channel (2), payload size (4); the payload; the end octet.
_HEADER = struct.Struct(">BHI")
_HEADER_SIZE = _HEADER.size
_FRAME_END = 0xCE
_METHOD, _CONTENT_HEADER, _BODY = 1, 2, 3
_DELIVER = b"\x00\x3c\x00\x3c"  # Basic.Deliver: class 60, method 60
_BODY_SIZE = struct.Struct(">Q")  # a content header's body size, after class id and weight
_DECODE_ERRORS = (PAMQPException, ValueError, struct.error, IndexError)
#: What the buffer's head is, for `get_frame` (see `_hand_over`).
_OTHER, _MORE_BYTES, _CATCH_UP = object(), object(), object()
#: How often a routed delivery lets aiormq's reader catch up before it goes
#: aiormq's way instead (its reader drains its queue in one step, unless it is
#: blocked: then the delivery does not wait for it).
CATCH_UP_YIELDS = 2

#: Whether a DeliveredMessage (a frozen dataclass) can be filled in directly, a
#: third of its constructor's time: the fields are the ones this was written for.
_DIRECT_MESSAGE = not hasattr(DeliveredMessage, "__slots__") and tuple(
    field.name for field in dataclasses.fields(DeliveredMessage)
) == ("delivery", "header", "body", "channel")
_new = object.__new__

#: The receivers created while `opening()` watches.
_opened: ContextVar[list[BufferedFrameReceiver] | None] = ContextVar(
    "fleet_opened_receivers", default=None
)

_Original: Any = aiormq.connection.FrameReceiver


class BufferedFrameReceiver(_Original):  # type: ignore[misc]
    """aiormq's FrameReceiver, reading the socket in bulk."""

    reader: asyncio.StreamReader
    started: bool

    def __init__(self, reader: asyncio.StreamReader):
        super().__init__(reader)
        self._buffer = bytearray()
        self._offset = 0
        #: Routed channels by number (`routing.route`).
        self.routes: dict[int, Route] = {}
        #: The aiormq connection it reads for (`routing.attach`).
        self.connection: Any = None
        #: Bytes the routed delivery at the head of the buffer needs at least (so a
        #: large one is not parsed again after every read); the head moving resets it.
        self._wanted = 0
        opened = _opened.get()
        if opened is not None:
            opened.append(self)

    async def get_frame(self) -> tuple[int, int, Any]:
        catching_up = 0
        while True:
            try:
                head = self._hand_over() if self.routes else _OTHER
                if head is _MORE_BYTES:
                    await self._fill()
                    continue
                if head is _CATCH_UP and catching_up < CATCH_UP_YIELDS:
                    catching_up += 1
                    await asyncio.sleep(0)
                    continue
                data = self._cut()
                if data is not None:
                    return decode_frame(data)
            except _DECODE_ERRORS as e:
                raise InvalidFrameError(f"{type(e).__name__}: {e}") from e
            await self._fill()

    def _hand_over(self) -> object:
        """Dispatch every whole delivery at the buffer's head whose channel is
        routed; then say what the head is: `_MORE_BYTES` (a routed delivery, not
        all here), `_CATCH_UP` (a routed delivery, but aiormq's reader has frames
        of its channel to see first) or `_OTHER` (for aiormq)."""
        buffer = self._buffer
        touched: Route | None = None
        head = _OTHER
        while True:
            offset = self._offset
            available = len(buffer) - offset
            if available < _HEADER_SIZE or not self.started:
                break
            kind, channel, size = _HEADER.unpack_from(buffer, offset)
            route = self.routes.get(channel)
            if (
                kind != _METHOD
                or route is None
                or not buffer.startswith(_DELIVER, offset + _HEADER_SIZE)
            ):
                break
            if not route.accepting():
                # The frames aiormq still holds come before this delivery and are
                # whole deliveries (or others): once its reader has run, they are
                # gone and routing resumes (else a delivery split across two reads
                # would keep every later one on aiormq's path).
                head = _CATCH_UP
                break
            if available < self._wanted:  # this delivery, still short of bytes
                head = _MORE_BYTES
                break
            self._wanted = 0
            parts = self._delivery_at(offset, channel, size)
            if parts is None:
                break  # not a delivery's usual frames: aiormq's path decides
            if isinstance(parts, int):
                self._wanted = parts
                head = _MORE_BYTES
                break
            method_end, header_end, bodies, end = parts
            frame = deliver(buffer, method_end - 1, offset)
            callback = route.consumer(frame.consumer_tag or "")
            if callback is None:
                break
            header = content_header(buffer, header_end - 1, method_end)
            if len(bodies) == 1:
                start, stop = bodies[0]
                body = bytes(buffer[start:stop])
            else:
                body = b"".join([buffer[start:stop] for start, stop in bodies])
            if end == len(buffer):
                buffer.clear()
                self._offset = 0
            else:
                self._offset = end
            if _DIRECT_MESSAGE:
                message = _new(DeliveredMessage)
                fields = message.__dict__
                fields["delivery"] = frame
                fields["header"] = header
                fields["body"] = body
                fields["channel"] = route.channel
            else:
                message = DeliveredMessage(
                    delivery=frame, header=header, body=body, channel=route.channel
                )
            route.dispatch(callback, message)
            touched = route
        if touched is not None:
            touched.touch()
        return head

    def _delivery_at(
        self, offset: int, channel: int, size: int
    ) -> tuple[int, int, list[tuple[int, int]], int] | int | None:
        """Where the delivery starting at `offset` lies: (method end, header end, body
        payload spans, end); or the bytes it needs at least when not all of it is
        buffered; or None when its frames are not a method, a content header and
        body frames of one channel."""
        buffer = self._buffer
        length = len(buffer)
        method_end = offset + _HEADER_SIZE + size + 1
        if method_end + _HEADER_SIZE > length:
            return method_end + _HEADER_SIZE - offset
        kind: int
        on: int
        header_size: int
        kind, on, header_size = _HEADER.unpack_from(buffer, method_end)
        if kind != _CONTENT_HEADER or on != channel or header_size < 12:
            return None
        header_end = method_end + _HEADER_SIZE + header_size + 1
        if header_end > length:
            return header_end - offset
        body_size: int = _BODY_SIZE.unpack_from(buffer, method_end + _HEADER_SIZE + 4)[0]
        bodies: list[tuple[int, int]] = []
        position, got = header_end, 0
        while got < body_size:
            if position + _HEADER_SIZE > length:
                return position + _HEADER_SIZE + body_size - got + 1 - offset
            frame_size: int
            kind, on, frame_size = _HEADER.unpack_from(buffer, position)
            if kind != _BODY or on != channel:
                return None
            end = position + _HEADER_SIZE + frame_size + 1
            if end > length:
                return end - offset
            if buffer[end - 1] != _FRAME_END:
                return None  # aiormq's path cuts it and refuses the frame
            bodies.append((position + _HEADER_SIZE, end - 1))
            got += frame_size
            position = end
        for end in (method_end, header_end):
            if buffer[end - 1] != _FRAME_END:
                return None
        return method_end, header_end, bodies, position

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
        self._wanted = 0
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


@contextmanager
def opening() -> Iterator[list[BufferedFrameReceiver]]:
    """The receivers created while the block runs (by the connect it awaits)."""
    opened: list[BufferedFrameReceiver] = []
    token = _opened.set(opened)
    try:
        yield opened
    finally:
        _opened.reset(token)


def install() -> bool:
    """Make aiormq read frames with `BufferedFrameReceiver`; whether it is in use."""
    current = aiormq.connection.FrameReceiver
    if current is BufferedFrameReceiver:
        return True
    if current is not _Original or not hasattr(current, "get_frame"):
        return False  # an aiormq this was not written against
    aiormq.connection.FrameReceiver = BufferedFrameReceiver  # type: ignore[misc]
    return True
