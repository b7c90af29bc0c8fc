"""What a handler receives beside its event."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from workers.database import Database


class Context:
    """The delivery's ids and a logger bound to them.

    The logger is built on first use: most handlers never log, and binding a
    logger for every message would cost more than decoding it.
    """

    __slots__ = (
        "_log",
        "attempt",
        "causation_id",
        "correlation_id",
        "db",
        "event_type",
        "headers",
        "message_id",
        "queue",
        "redelivered",
        "worker",
    )

    def __init__(
        self,
        *,
        worker: str,
        queue: str,
        event_type: str,
        message_id: str,
        correlation_id: str,
        causation_id: str | None = None,
        attempt: int = 1,
        redelivered: bool = False,
        headers: Mapping[str, Any] | None = None,
    ):
        self.worker = worker
        self.queue = queue
        self.event_type = event_type
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self.attempt = attempt
        self.redelivered = redelivered
        self.headers: Mapping[str, Any] = headers or {}
        self._log: structlog.typing.FilteringBoundLogger | None = None
        #: The inbox transaction's connection (asyncpg) when the worker has a
        #: database: write through it and the writes commit with the processed mark.
        #: What a handler may call on it is `workers.database.Database`. Without
        #: a database, using it raises DatabaseRequired naming the fix.
        self.db: Database = no_database(worker)

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A logger bound to worker, queue, message_id, correlation_id, type and attempt."""
        if self._log is None:
            self._log = structlog.get_logger().bind(**self.fields())
        return self._log

    def fields(self) -> dict[str, Any]:
        """The ids every log line about this delivery carries."""
        return {
            "worker": self.worker,
            "queue": self.queue,
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "type": self.event_type,
            "attempt": self.attempt,
        }


@cache
def no_database(worker: str) -> NoDatabase:
    """The one `NoDatabase` of a worker (a Context is made per message)."""
    return NoDatabase(worker)


class NoDatabase:
    """``ctx.db`` of a worker running without a database: any use says what to do.

    A `Database` to the type checker (its ``__getattr__`` answers every name),
    so handlers are checked the same with or without one.
    """

    __slots__ = ("_worker",)

    def __init__(self, worker: str):
        self._worker = worker

    def __getattr__(self, name: str) -> Any:
        from workers.errors import DatabaseRequired

        raise DatabaseRequired(self._worker)

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<no database for worker {self._worker!r}>"
