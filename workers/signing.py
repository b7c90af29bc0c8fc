"""Checks shared by every signed or secret-bearing request: constant-time
matching against several secrets, and a signed timestamp's freshness."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Sequence


def matches_any(given: Sequence[bytes], expected: Iterable[bytes]) -> bool:
    """Whether any of `given` equals any of `expected`.

    Every pair is compared, in constant time and without an early exit, so the
    time taken says nothing about which secret (if any) was close.
    """
    matched = False
    for candidate in expected:
        for value in given:
            matched |= hmac.compare_digest(value, candidate)
    return matched


def timestamp_problem(text: str, *, now: float | None, tolerance: float) -> str | None:
    """What is wrong with a signed Unix timestamp (seconds), or None if it lies
    within `tolerance` seconds of `now` (default: the clock), either way."""
    try:
        sent = int(text)
    except ValueError:
        return "is not an integer"
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return "is too old or in the future"
    return None
