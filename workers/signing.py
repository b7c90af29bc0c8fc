"""Checks shared by every signed or secret-bearing request: constant-time
matching against several secrets, a signed timestamp's freshness, and the
bytes of a header or secret that may not be valid UTF-8."""

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


def as_bytes(text: str) -> bytes:
    """The bytes of a header value or secret, whatever it holds.

    aiohttp decodes header bytes that are not UTF-8 with ``surrogateescape``,
    and so does Python for environment variables: this gives those bytes back
    (and any other lone surrogate as UTF-8 would spell it), where a plain
    ``str.encode()`` raises UnicodeEncodeError.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def timestamp_problem(text: str, *, now: float | None, tolerance: float) -> str | None:
    """What is wrong with a signed Unix timestamp (seconds), or None if it lies
    within `tolerance` seconds of `now` (default: the clock), either way."""
    try:
        sent = int(text)
    except ValueError:
        return "is not an integer"
    current = time.time() if now is None else now
    try:
        skew = abs(current - sent)
    except OverflowError:  # an integer past any float: centuries away
        return "is too old or in the future"
    if skew > tolerance:
        return "is too old or in the future"
    return None
