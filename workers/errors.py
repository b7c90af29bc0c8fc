"""Errors a handler raises to steer its message, and errors of the runtime.

    WorkerError
    ├── Retry              retry later: skips the in-process attempts, goes to a delay tier
                           (`after=`: the wait a downstream asked for, a 429's Retry-After)
    ├── Reject             permanent: park in <queue>.dead at once with this reason
    ├── PublishFailed      a follow-on event was nacked or returned unroutable by the broker
    │   └── PublishNacked  nacked: the broker did not take it (worth sending again)
    ├── WorkerNotFound     (also LookupError) the topology or module has no such worker
    ├── DatabaseRequired   a worker that keeps state was started without a database
    └── NotADeadLetterQueue (also ValueError) a queue named to `fleet dlq` is not one

Any other exception from a handler is transient and retried.
"""

from __future__ import annotations

from datetime import timedelta


class WorkerError(Exception):
    """Base of every error raised by `workers`."""


class Retry(WorkerError):
    """Raise to have the message retried later (not logged as an error).

    Args:
        reason: why, for the logs and the retry headers.
        delay: ask for at least this long; fleet picks the first delay tier that is
            as long (or the last tier), after the tiers already used.
        after: the wait a downstream told (an HTTP 429 or 503 with Retry-After),
            in seconds or as a timedelta. fleet picks, among all tiers, the shortest
            that is not shorter (or the longest); each such retry uses one tier of
            the message's budget, and once all are used the message is parked.
    """

    def __init__(
        self,
        reason: str = "retry requested",
        *,
        delay: timedelta | None = None,
        after: float | timedelta | None = None,
    ):
        if delay is not None and after is not None:
            raise ValueError("Retry takes delay= or after=, not both")
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.after = after if after is None or isinstance(after, timedelta) else _wait(after)

    def __repr__(self) -> str:
        delay = f" delay {self.delay.total_seconds():.2f}s" if self.delay else ""
        after = f" after {self.after.total_seconds():.2f}s" if self.after is not None else ""
        return f"<Retry{delay}{after}: {self.reason}>"


#: The longest wait `Retry(after=)` keeps: longer than any delay tier, short of
#: timedelta's overflow (a downstream may say anything).
LONGEST_WAIT = timedelta(days=365)


def _wait(seconds: float) -> timedelta:
    """`seconds` as a wait: negative or NaN is none, past `LONGEST_WAIT` is that."""
    seconds = float(seconds)
    if not seconds > 0:
        return timedelta(0)
    return timedelta(seconds=min(seconds, LONGEST_WAIT.total_seconds()))


class Reject(WorkerError):
    """Raise when the message can never succeed: it is parked in `<queue>.dead` with `reason`."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PublishFailed(WorkerError):
    """The broker nacked a follow-on event, or returned it because nothing was bound."""


class PublishNacked(PublishFailed):
    """The broker nacked a publish: it took no responsibility for it (a quorum queue
    without a leader during a node's failover, say); sending it again may succeed."""


class WorkerNotFound(WorkerError, LookupError):
    """No worker of that name in the topology, or not in the module it names."""


class NotADeadLetterQueue(WorkerError, ValueError):
    """The queue named is not one fleet derives (`<queue>.dead` or `<queue>.retry.<delay>`)."""


class DatabaseRequired(WorkerError):
    """A worker declared with ``database=True`` (or a handler using ``ctx.db``) has no
    database: pass --database-url or set FLEET_DATABASE_URL."""

    def __init__(self, worker: str):
        super().__init__(
            f"worker {worker!r} keeps its state in PostgreSQL: "
            "pass --database-url or set FLEET_DATABASE_URL"
        )
