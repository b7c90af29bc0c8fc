"""A circuit breaker's decisions, pure: given outcomes and times, its state.
The caller passes the time, so it is tested with a fake clock.

    closed ──`threshold` transient failures in a row (or the error rate over
    │        the window, past `min_calls`)──▶ open
    open ──`cool_down` passed (due)──▶ half-open: one probe message
    half-open ──the probe succeeded──▶ closed (counts reset)
              └─the probe failed─────▶ open again, for another cool-down

Only the closed state counts ordinary outcomes: deliveries that were in
flight when it opened settle on their own path and decide nothing, and in
half-open only the probe's outcome counts (`probed`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half-open"]

#: The state as a number, for the `fleet_breaker_state` gauge.
STATE_VALUES: dict[State, int] = {"closed": 0, "half-open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class Transition:
    """The breaker went from `before` to `after`, for `reason`."""

    before: State
    after: State
    reason: str


class Circuit:
    """One breaker's state.

    Args:
        threshold: transient failures in a row that open it; None: no such trip.
        cool_down: seconds it stays open before a probe.
        error_rate: the share of failed calls within `window` seconds that opens it,
            once `min_calls` calls were seen there; None: no such trip.
    """

    __slots__ = (
        "_calls",
        "_failed",
        "_in_a_row",
        "_opened_at",
        "cool_down",
        "error_rate",
        "min_calls",
        "opened",
        "state",
        "threshold",
        "window",
    )

    def __init__(
        self,
        *,
        threshold: int | None,
        cool_down: float,
        error_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
    ):
        if threshold is None and error_rate is None:
            raise ValueError("a breaker needs a threshold or an error rate")
        self.threshold = threshold
        self.cool_down = cool_down
        self.error_rate = error_rate
        self.window = window
        self.min_calls = min_calls
        self.state: State = "closed"
        #: Times it opened (from closed or after a failed probe).
        self.opened = 0
        self._in_a_row = 0
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed), error-rate form
        self._failed = 0
        self._opened_at = 0.0

    def record(self, failed: bool, now: float) -> Transition | None:
        """An ordinary delivery's outcome: a transient failure, or a success."""
        if self.state != "closed":
            return None
        self._in_a_row = self._in_a_row + 1 if failed else 0
        if self.threshold is not None and self._in_a_row >= self.threshold:
            return self._open(now, f"{self._in_a_row} transient failures in a row")
        if self.error_rate is None:
            return None
        calls = self._calls
        calls.append((now, failed))
        self._failed += failed
        while calls and calls[0][0] <= now - self.window:
            self._failed -= calls.popleft()[1]
        if len(calls) >= self.min_calls and self._failed >= self.error_rate * len(calls):
            return self._open(
                now, f"{self._failed} of {len(calls)} calls failed in {self.window:g}s"
            )
        return None

    def due(self, now: float) -> Transition | None:
        """Open and its cool-down over: half-open, a probe may go."""
        if self.state != "open" or now < self._opened_at + self.cool_down:
            return None
        self.state = "half-open"
        return Transition("open", "half-open", f"cool-down of {self.cool_down:g}s over")

    def probed(self, failed: bool, now: float) -> Transition | None:
        """The probe's outcome: closed on success, open again on failure."""
        if self.state != "half-open":
            return None
        if failed:
            return self._open(now, "the probe failed")
        self.state = "closed"
        self._reset()
        return Transition("half-open", "closed", "the probe succeeded")

    @property
    def reopens_at(self) -> float | None:
        """When an open breaker is due (the clock's time); None when not open."""
        return self._opened_at + self.cool_down if self.state == "open" else None

    def _open(self, now: float, reason: str) -> Transition:
        before = self.state
        self.state = "open"
        self.opened += 1
        self._opened_at = now
        self._reset()
        return Transition(before, "open", reason)

    def _reset(self) -> None:
        self._in_a_row = 0
        self._calls.clear()
        self._failed = 0
