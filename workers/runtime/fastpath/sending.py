"""Queueing a marshalled publish on an aiormq confirm-mode channel.

aiormq's `basic_publish` takes the channel lock, a timeout scope and a
close-watching context, builds pamqp objects and marshals them, and awaits a
place in the connection's write queue: a saga step spent more time there than
in the rest of the message path. `FrameSender` does what it must and no more,
in one synchronous step: it takes the channel's next publish sequence number,
registers the confirm future where aiormq's reader resolves it (acks, nacks,
`multiple` acks, and returns through the message id), and queues the bytes.

Order is what matters: the broker numbers publishes in the order it receives
them. Taking the number and queueing the bytes happen without yielding, so no
other publish can come between them; while anybody holds the channel lock
(aiormq's own `basic_publish`, or a send waiting for room in a full write
queue) a send waits for the lock too.

`FrameSender.on(channel)` returns None for a channel of another shape (a
different aiormq) or without confirms; the caller then uses `basic_publish`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.abc import AbstractChannel, ChannelFrame
from aiormq.exceptions import ChannelInvalidStateError

#: What aiormq's Channel must have for `FrameSender` to drive it.
_NEEDED = (
    "confirmations",
    "message_id_delivery_tag",
    "delivery_tag",
    "write_queue",
    "number",
    "max_content_size",
    "create_future",
    "is_closed",
    "lock",
    "_Channel__lock",
)


class FrameSender:
    """Sends pre-marshalled publishes on one confirm-mode aiormq channel."""

    __slots__ = ("_channel", "_lock", "_queue", "max_body_frame", "number")

    def __init__(self, channel: Any):
        self._channel = channel
        self._lock: asyncio.Lock = channel._Channel__lock
        self._queue: asyncio.Queue[Any] = channel.write_queue
        self.number: int = channel.number
        #: The largest body frame payload the connection allows.
        self.max_body_frame: int = channel.max_content_size

    @classmethod
    def on(cls, channel: AbstractChannel) -> FrameSender | None:
        """A sender for `channel`, or None when it cannot drive it."""
        if not all(hasattr(channel, name) for name in _NEEDED):
            return None
        if not getattr(channel, "publisher_confirms", False):
            return None
        if not isinstance(getattr(channel, "_Channel__lock", None), asyncio.Lock):
            return None
        return cls(channel)

    async def send(self, frames: bytes, message_id: str) -> Any:
        """Queue one publish's frames; returns the broker's confirm frame (Basic.Ack).

        Raises:
            aiormq.exceptions.PublishError: the broker returned it (unroutable, mandatory).
            aiormq.exceptions.DeliveryError: the broker nacked it.
            ChannelInvalidStateError: the channel is closed.
        """
        if self._lock.locked() or self._queue.full():
            async with self._channel.lock:  # raises if the channel closed meanwhile
                confirmation = self._register(message_id)
                try:
                    await self._queue.put(ChannelFrame(payload=frames, should_close=False))
                except BaseException:
                    self._unregister(confirmation, message_id)
                    raise
        else:
            if self._channel.is_closed:
                raise ChannelInvalidStateError(f"{self._channel!r} closed")
            confirmation = self._register(message_id)
            self._queue.put_nowait(ChannelFrame(payload=frames, should_close=False))
        return await confirmation

    def _register(self, message_id: str) -> asyncio.Future[Any]:
        """The next sequence number's confirm future, where aiormq's reader finds it."""
        channel = self._channel
        channel.delivery_tag += 1
        tag: int = channel.delivery_tag
        confirmation: asyncio.Future[Any] = channel.create_future()
        channel.confirmations[tag] = confirmation
        # A returned message is matched to its publish by message id.
        by_id: dict[str, int] = channel.message_id_delivery_tag
        by_id[message_id] = tag

        def forget(_: asyncio.Future[Any]) -> None:
            if by_id.get(message_id) == tag:
                del by_id[message_id]

        confirmation.add_done_callback(forget)
        return confirmation

    def _unregister(self, confirmation: asyncio.Future[Any], message_id: str) -> None:
        """Give back the last sequence number: its frames never reached the queue."""
        channel = self._channel
        tag: int = channel.delivery_tag
        channel.delivery_tag -= 1
        channel.confirmations.pop(tag, None)
        if channel.message_id_delivery_tag.get(message_id) == tag:
            del channel.message_id_delivery_tag[message_id]
        confirmation.cancel()
