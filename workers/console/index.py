"""The failures page's view of each dead-letter queue, read once and reused.

Reading 10,000 messages takes over a second on a small machine (it is the
client's frame parsing, not the broker). So, as ServicePulse indexes its error
queue, the console keeps the last read of each queue and answers from it: a
read older than `max_age` is served while a fresh one is made in the
background, and an action on a queue drops its read, so the next page shows
the queue as it is now. Reads and actions on one queue take turns (a read
holds the messages for a moment, and an action must see all of them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import AbstractConnection

from workers.console.browse import browse
from workers.console.failures import FailedMessage, read


@dataclass(frozen=True)
class QueueRead:
    """The messages of one queue at one moment."""

    queue: str
    messages: list[FailedMessage]
    depth: int
    at: datetime
    monotonic: float
    seconds: float  # how long the read took

    @property
    def partial(self) -> bool:
        """Whether the queue held more than was read (past the console's limit)."""
        return self.depth > len(self.messages)

    def age(self) -> float:
        return time.monotonic() - self.monotonic


class FailureIndex:
    """The last read of each dead-letter queue."""

    def __init__(
        self, connection: Callable[[], AbstractConnection], *, limit: int, max_age: float
    ) -> None:
        self._connection = connection  # the console's current one (renewed after a restart)
        self._limit = limit
        self._max_age = max_age
        self._reads: dict[str, QueueRead] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._refreshing: dict[str, asyncio.Task[QueueRead]] = {}

    @asynccontextmanager
    async def exclusive(self, queue: str) -> AsyncIterator[None]:
        """Hold `queue` for an action; its read is dropped afterwards."""
        async with self._lock(queue):
            try:
                yield
            finally:
                self._reads.pop(queue, None)

    async def get(self, queue: str) -> QueueRead:
        """The queue's last read, if young enough or being renewed; else a fresh one."""
        last = self._reads.get(queue)
        if last is None:
            return await self.refresh(queue)
        if last.age() > self._max_age and queue not in self._refreshing:
            task = asyncio.create_task(self.refresh(queue))
            self._refreshing[queue] = task
            task.add_done_callback(lambda _: self._refreshing.pop(queue, None))
        return last

    def forget(self, queue: str) -> None:
        """Drop the queue's read: the next page reads the queue again."""
        self._reads.pop(queue, None)

    async def refresh(self, queue: str) -> QueueRead:
        async with self._lock(queue):
            started = time.monotonic()
            browsed = await browse(self._connection(), queue, limit=self._limit)
            messages = [read(queue, i, m) for i, m in enumerate(browsed.messages)]
            done = QueueRead(
                queue, messages, browsed.depth, datetime.now(UTC), time.monotonic(),
                time.monotonic() - started,
            )  # fmt: skip
            self._reads[queue] = done
            return done

    def _lock(self, queue: str) -> asyncio.Lock:
        return self._locks.setdefault(queue, asyncio.Lock())
