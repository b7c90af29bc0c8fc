"""A token bucket: how long a call must wait to keep to a rate. Pure: the caller
passes the time, so it is tested with a fake clock and costs no await when a
token is there.

    tokens refill at `rate` per second, up to `burst`
    take(now) ─▶ a token there? 0.0 (go now)
               └▶ else the seconds until the token this caller reserved is due

A take that must wait reserves its token at once (the level goes below zero),
so concurrent callers queue up one interval apart instead of all waking
together and racing for the next token; waits are counted from the schedule,
not from when a sleeper wakes, so timer lateness does not add up.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full.

    Args:
        rate: tokens added per second (above zero).
        burst: the most tokens saved up while idle (at least 1): how many calls
            may go at once after a pause.
        now: the clock's time at creation.
    """

    __slots__ = ("_at", "_level", "burst", "rate")

    def __init__(self, rate: float, burst: int = 1, *, now: float = 0.0):
        if rate <= 0:
            raise ValueError("a token bucket's rate must be above zero")
        if burst < 1:
            raise ValueError("a token bucket's burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        """Take a token; the seconds to wait before using it (0.0: at once)."""
        if now > self._at:
            self._level = min(float(self.burst), self._level + (now - self._at) * self.rate)
            self._at = now
        self._level -= 1.0
        return 0.0 if self._level >= 0.0 else -self._level / self.rate
