"""Coalescing the producers' wake-ups: one NOTIFY in flight per outbox, not one per commit.

A wake-up tells the relay "something committed before me". Every commit
needs one that *starts* after it, but one wake-up serves every commit that
finished before it began. Two ways to send them:

- On the caller's connection (the default): a caller that finds a wake-up in
  flight waits for it to end (it may have started before the caller's
  commit), then either joins the one another waiter has started since, or
  sends it itself. Under load a few connections send wake-ups back to back
  and the others send none.
- From a connection of the outbox's own (`Outbox.waking(database_url)`): the
  caller only asks, and returns at once; a background task sends a wake-up
  whenever one was asked for since its last one began. The producer's
  transaction then costs no round trip beyond its own statements.

Either way PostgreSQL, which serialises the commits of notifying
transactions, sees one notifying transaction at a time instead of one per
producer commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger("fleet.outbox")


#: The least time between two background wake-ups. A busy producer commits
#: thousands of times a second, and every wake-up is a transaction PostgreSQL
#: runs (the bench: one per two commits without it, costing the producer a
#: fifth of its rate); a relay woken this often still publishes within a
#: couple of milliseconds of the commit.
SPACING = 0.002


class _Round:
    """One wake-up on the wire; `done` is set when it ended, however it ended."""

    def __init__(self) -> None:
        self.done = asyncio.Event()


class Wakeups:
    """Single-flight wake-ups for one process's producers of one outbox."""

    def __init__(self) -> None:
        self._current: _Round | None = None
        self._asked: asyncio.Event | None = None  # set while a background sender runs
        #: Wake-ups sent and calls served without sending one (tests, the bench).
        self.sent = 0
        self.joined = 0

    @property
    def in_background(self) -> bool:
        """Whether a background sender (`sending`) takes the wake-ups."""
        return self._asked is not None

    async def wake(self, send: Callable[[], Awaitable[object]]) -> None:
        """Make sure a wake-up starts after this call; `send` sends one on the
        caller's connection (unused while a background sender runs)."""
        if self._asked is not None:
            self._asked.set()
            self.joined += 1
            return
        called_during: _Round | None = self._current
        while True:
            current = self._current
            if current is None:
                await self._lead(send)
                return
            if current is not called_during:
                # Started after this call, so after the caller's commit: it covers us.
                self.joined += 1
                await current.done.wait()
                return
            await current.done.wait()  # started before us; wait, then look again
            called_during = None

    async def _lead(self, send: Callable[[], Awaitable[object]]) -> None:
        round_ = self._current = _Round()
        try:
            await send()
            self.sent += 1
        finally:
            # Waiters go on even if this one failed or was cancelled: a wake-up is
            # best effort, and the relay's poll is the net under it.
            self._current = None
            round_.done.set()

    @contextlib.asynccontextmanager
    async def sending(
        self,
        send: Callable[[], Awaitable[object]],
        *,
        retry_in: float = 1.0,
        spacing: float = SPACING,
    ) -> AsyncIterator[None]:
        """Send the wake-ups from a background task, with `send`, until the block ends.

        Wake-ups start at least `spacing` seconds apart: the first after a quiet
        spell goes at once, and those asked for within `spacing` of it share
        the next one. A failed `send` is tried again every `retry_in` seconds:
        wake-ups asked for while the database is unreachable are sent once it
        answers (the relay's poll covers the gap).
        """
        if self._asked is not None:
            raise RuntimeError("this outbox's wake-ups are sent in the background already")
        asked = self._asked = asyncio.Event()
        task = asyncio.create_task(self._send_asked(asked, send, retry_in, spacing))
        try:
            yield
        finally:
            self._asked = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send_asked(
        self,
        asked: asyncio.Event,
        send: Callable[[], Awaitable[object]],
        retry_in: float,
        spacing: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asked.wait()
            asked.clear()  # asked again from here on: another wake-up follows this one
            began = loop.time()
            try:
                await send()
                self.sent += 1
            except Exception as exc:
                log.warning("outbox.wake_failed", error=str(exc) or type(exc).__name__)
                asked.set()  # still owed
                await asyncio.sleep(retry_in)
                continue
            rest = began + spacing - loop.time()
            if rest > 0:
                await asyncio.sleep(rest)
