"""Concurrency slots, with an exclusive mode for suspect deliveries.

A delivery the broker flags as redelivered may be the one that crashed the
last process. Running it alone means that if the process dies again, the
culprit is known: it is the only handler that was running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Slots:
    """At most `size` handlers at once; `exclusive()` waits until it runs alone."""

    def __init__(self, size: int):
        self.size = size
        self._shared = asyncio.Semaphore(size)
        self._exclusive = asyncio.Lock()

    @property
    def shared(self) -> asyncio.Semaphore:
        """The common path: ``async with slots.shared``."""
        return self._shared

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold every slot: no other handler runs until the block exits."""
        async with self._exclusive:
            taken = 0
            try:
                for _ in range(self.size):
                    await self._shared.acquire()
                    taken += 1
                yield
            finally:
                for _ in range(taken):
                    self._shared.release()
