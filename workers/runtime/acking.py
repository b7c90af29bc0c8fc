"""One channel's acks, owned in one place: the batcher's decisions (`acks.AckBatcher`)
sent under one lock, with the timer that acks a batch that never fills.

Deciding and sending happen under the same lock: deciding outside it would let
a newer multiple ack overtake an older one, which then names a tag already
settled, and RabbitMQ closes the channel for that (PRECONDITION_FAILED,
unknown delivery tag). Most deliveries decide no frame at all, and when nobody
holds or waits for the lock, deciding goes without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiormq
import structlog
from aiormq.abc import AbstractChannel

from workers.runtime.acks import AckBatcher, Frame

log = structlog.get_logger("fleet.acks")

#: How long finished deliveries may wait for a batch to fill before they are
#: acked anyway. Delivery to the handler is not delayed by it, only the
#: release of the prefetch slots.
ACK_DELAY = 0.002

#: A channel that is gone: its acks cannot be sent, and the broker redelivers.
_CHANNEL_GONE = (
    ConnectionError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
)


class Acknowledger:
    """Acks, nacks and their batching on one aiormq channel.

    Args:
        channel: the channel the deliveries arrived on.
        queue: the queue consumed, for the log.
        batch: finished deliveries gathered per multiple ack.
        scatter_after: finished deliveries held behind an unfinished one before
            they are acked one by one.
    """

    def __init__(
        self, channel: AbstractChannel, *, queue: str = "", batch: int, scatter_after: int
    ):
        self._channel = channel
        self._queue = queue
        self._batcher = AckBatcher(batch=batch, scatter_after=scatter_after)
        self._lock = asyncio.Lock()
        #: Tasks holding or waiting for `_lock`.
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Deliveries received and not yet settled."""
        return self._batcher.in_flight

    def received(self) -> None:
        """A delivery arrived."""
        self._batcher.received()

    def abandoned(self) -> None:
        """A delivery is left unsettled (the channel closed, or shutting down): the
        broker redelivers it once the channel is gone."""
        self._batcher.abandoned()

    async def finished(self, tag: int) -> None:
        """A delivery is done: ack it, now or with its batch."""
        await self._send(self._batcher.finished, tag)
        if self._timer is None and self._batcher.due:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(ACK_DELAY, self._flush_later)

    async def requeue(self, tag: int) -> None:
        """Hand a delivery back to its queue (nack with requeue), never naming it in an ack."""
        async with self._lock:
            await self._channel.basic_nack(tag, multiple=False, requeue=True, wait=False)
            for frame_tag, multiple in self._batcher.settled(tag):
                await self._channel.basic_ack(frame_tag, multiple=multiple, wait=False)

    async def flush(self) -> None:
        """Send the ack every finished delivery is waiting for (before closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._send(self._batcher.flush)

    async def _send(self, decide: Callable[..., list[Frame]], *args: int) -> None:
        """Decide the ack frames and send them, both under one lock (see the module)."""
        frames: list[Frame] | None = None
        if self._waiting == 0:
            # Nobody holds or waits for the lock: decide without it. Most
            # deliveries decide no frame and are done; otherwise the lock is free
            # and taken at once, so no later decision can be sent before this one.
            frames = decide(*args)
        if frames is None or frames:
            self._waiting += 1
            try:
                async with self._lock:
                    for tag, multiple in decide(*args) if frames is None else frames:
                        await self._channel.basic_ack(tag, multiple=multiple, wait=False)
            finally:
                self._waiting -= 1

    def _flush_later(self) -> None:
        self._timer = None
        if self._batcher.due:
            task = asyncio.get_running_loop().create_task(self._flush_quietly())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self._send(self._batcher.flush)
        except _CHANNEL_GONE as error:
            # The channel is gone: the broker redelivers these and dedupe absorbs them.
            log.warning("acks.unsent", queue=self._queue, error=str(error))
