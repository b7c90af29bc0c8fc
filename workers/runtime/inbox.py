"""Idempotency: remember which (worker, message_id) pairs were processed.

The runtime asks `seen` before calling a handler and calls `record` after the
handler's effects are done and before the ack.
"""

from __future__ import annotations

from typing import Protocol


class Inbox(Protocol):
    """Where processed message ids are kept."""

    async def seen(self, worker: str, message_id: str) -> bool:
        """Whether this worker already processed this message."""
        ...

    async def record(self, worker: str, message_id: str) -> None:
        """Remember that this worker processed this message."""
        ...


class MemoryInbox:
    """An inbox in this process's memory: for tests, and never across processes."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    async def seen(self, worker: str, message_id: str) -> bool:
        return (worker, message_id) in self._seen

    async def record(self, worker: str, message_id: str) -> None:
        self._seen.add((worker, message_id))
