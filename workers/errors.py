"""Errors a handler raises to steer its message, and errors of the runtime.

    WorkerError
    ├── Retry              retry later: skips the in-process attempts, goes to the next delay tier
    ├── Reject             permanent: park in <queue>.dead at once with this reason
    ├── PublishFailed      a follow-on event was nacked or returned unroutable by the broker
    │   └── PublishNacked  nacked: the broker did not take it (worth sending again)
    ├── WorkerNotFound     (also LookupError) the topology or module has no such worker
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
            as long (or the last tier).
    """

    def __init__(self, reason: str = "retry requested", *, delay: timedelta | None = None):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay

    def __repr__(self) -> str:
        delay = f" delay {self.delay.total_seconds():.2f}s" if self.delay else ""
        return f"<Retry{delay}: {self.reason}>"


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
