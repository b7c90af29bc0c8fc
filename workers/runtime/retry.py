"""What happens to a failed delivery: retried in process, redelivered later
through a delay queue, or parked. Pure decisions; the consumer carries them out.

    handler raises ─▶ permanent (Reject, a configured class, a PostgreSQL data error)? ─▶ Park
                    └▶ in-process attempts left? (tenacity: exponential, jittered) ─▶ call again
                       └▶ delay tiers left? ─▶ Redeliver(<queue>.retry.<delay>)
                          └▶ Park (retries exhausted)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from topology import Duration, RetryPolicy
from topology.names import retry_queue
from workers.errors import Reject, Retry

T = TypeVar("T")

#: How much of an error message a dead-letter header keeps.
MESSAGE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Publish to a delay queue, which dead-letters the message back after `delay`."""

    queue: str
    delay: Duration
    tier: int  # 1 for the first delay
    reason: str
    #: Delayed redeliveries so far, this one included, when it is not `tier`: a
    #: server-told delay (`Retry(after=)`) picks its tier by length, not by turn.
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class Park:
    """Publish to the dead-letter queue with the reason, and stop trying."""

    #: decode | unknown-type | invalid-version | undecodable-properties | permanent
    #: | retries-exhausted | crash-loop | internal (docs/concepts/message-path.md)
    reason: str
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class Recount:
    """Put a redelivered message back at the queue's tail with its delivery count.

    Classic queues do not count deliveries, and a message that kills its
    worker comes back flagged `redelivered` every time; carrying the count in
    a header bounds how often that can happen before it is parked.
    """

    deliveries: int


Decision = Redeliver | Park | Recount


class HandlerFailed(Exception):
    """The handler failed every in-process attempt; carries the last error."""

    def __init__(self, error: BaseException, attempts: int):
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def crash_guard(unfinished: int, limit: int, *, recount: bool = False) -> Decision | None:
    """What to do with a suspect delivery that `unfinished` earlier runs never settled.

    Args:
        unfinished: starts (or, with `recount`, redeliveries) that ended without
            the message being settled, so most likely with the process dying.
        limit: how many of those a message is allowed.
        recount: the count lives in the message's header and must be carried
            forward by putting the message back (no inbox database to hold it).
    """
    if unfinished >= limit:
        return Park(
            "crash-loop",
            "CrashLoop",
            f"started {unfinished} times without finishing: it may crash its worker",
        )
    return Recount(unfinished) if recount else None


class RetryRules:
    """One queue's retry policy plus the worker's permanent error classes.

    Permanent, besides Reject and the configured classes: PostgreSQL's errors
    for data it can never store (`is_data_error`), unless `transient` lists them.

    Args:
        queue: the work queue, for naming its delay queues.
        policy: attempts, backoff and delay tiers from the topology file.
        permanent: exception classes that skip retries (besides Reject).
        transient: exception classes retried even though fleet deems them permanent.
    """

    def __init__(
        self,
        queue: str,
        policy: RetryPolicy,
        permanent: tuple[type[BaseException], ...] = (),
        transient: tuple[type[BaseException], ...] = (),
    ):
        self.queue = queue
        self.policy = policy
        self.permanent: tuple[type[BaseException], ...] = (Reject, *permanent)
        self.transient = transient

    def is_permanent(self, error: BaseException) -> bool:
        if isinstance(error, self.permanent):
            return True
        return is_data_error(error) and not isinstance(error, self.transient)

    async def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Call `function(*args)`, retrying transient failures in process.

        The first call is made directly: tenacity's machinery is only built
        once a call has failed, so the common path costs nothing extra.

        Raises:
            HandlerFailed: every attempt failed, or the error was permanent or a Retry.
        """
        try:
            return await function(*args)
        except Exception as error:
            if self.policy.attempts == 1 or isinstance(error, Retry) or self.is_permanent(error):
                raise HandlerFailed(error, 1) from error
        attempts = 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.attempts - 1),
            wait=wait_random_exponential(
                multiplier=self.policy.backoff.seconds, max=self.policy.max_backoff.seconds
            ),
            retry=retry_if_exception(
                lambda e: not isinstance(e, Retry) and not self.is_permanent(e)
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await function(*args)
        except Exception as error:
            raise HandlerFailed(error, attempts) from error
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def decide(self, error: BaseException, retries_done: int) -> Decision:
        """Where a delivery goes after its in-process attempts failed with `error`."""
        if self.is_permanent(error):
            reason = error.reason if isinstance(error, Reject) else describe(error)
            return Park("permanent", type(error).__name__, truncate(reason))
        delays = self.policy.delays
        if isinstance(error, Retry) and error.after is not None:
            return self._told(error, error.after.total_seconds(), retries_done)
        tier = retries_done
        if isinstance(error, Retry) and error.delay is not None:
            wanted = error.delay.total_seconds() * 1000
            while tier < len(delays) - 1 and delays[tier].ms < wanted:
                tier += 1
        if tier >= len(delays):
            return Park("retries-exhausted", type(error).__name__, truncate(describe(error)))
        delay = delays[tier]
        return Redeliver(retry_queue(self.queue, delay), delay, tier + 1, truncate(describe(error)))

    def _told(self, error: Retry, seconds: float, retries_done: int) -> Decision:
        """A wait the downstream asked for: the tier that covers it, one retry of the budget."""
        delays = self.policy.delays
        if retries_done >= len(delays):
            message = (
                f"{error.reason}: asked to retry after {seconds:g}s, "
                f"but all {len(delays)} retry tiers were used"
            )
            return Park("retries-exhausted", "Retry", truncate(message))
        index = tier_for(delays, seconds)
        delay = delays[index]
        reason = truncate(f"{describe(error)} (retry after {seconds:g}s)")
        return Redeliver(retry_queue(self.queue, delay), delay, index + 1, reason, retries_done + 1)


def tier_for(delays: Sequence[Duration], seconds: float) -> int:
    """The index of the shortest delay not shorter than `seconds`, else of the longest.

    Pure, for `Retry(after=)`: waiting somewhat longer than asked is safe, coming
    back early only earns another 429.
    """
    wanted = seconds * 1000
    covering = [i for i, d in enumerate(delays) if d.ms >= wanted]
    pool = covering or range(len(delays))
    pick = min if covering else max
    return pick(pool, key=lambda i: delays[i].ms)


#: asyncpg's errors for data PostgreSQL can never store, by module and name, so
#: that deciding needs no import of asyncpg. The same message fails the same
#: way on every attempt, so retrying only delays the dead letter.
DATA_ERRORS = frozenset(
    {
        # SQLSTATE class 22: numeric overflow, invalid byte sequence (a NUL), ...
        ("asyncpg.exceptions", "DataError"),
        # Refused by asyncpg before sending: a Python int past a bigint, say.
        ("asyncpg.exceptions._base", "DataError"),
        ("asyncpg.exceptions", "NotNullViolationError"),  # 23502
        ("asyncpg.exceptions", "CheckViolationError"),  # 23514
    }
)


def is_data_error(error: BaseException) -> bool:
    """Whether `error` is (a subclass of) one of `DATA_ERRORS`."""
    return any((c.__module__, c.__qualname__) in DATA_ERRORS for c in type(error).__mro__)


def describe(error: BaseException) -> str:
    """``ValueError: bad sku`` style, or just the type when the message is empty."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def truncate(text: str) -> str:
    """`text`, cut to what a dead-letter header keeps (`MESSAGE_LIMIT`)."""
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
