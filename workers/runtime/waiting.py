"""Waiting for whichever comes first: an event, a future, or a timeout."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_any(
    *waitables: asyncio.Event | asyncio.Future[Any], seconds: float | None = None
) -> None:
    """Return when any event is set or future done, or after `seconds` (never raises
    on the timeout; a future's own outcome is left to its owner)."""
    tasks: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(w.wait()) if isinstance(w, asyncio.Event) else w for w in waitables
    ]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task, source in zip(tasks, waitables, strict=True):
            if isinstance(source, asyncio.Event) and not task.done():
                task.cancel()
