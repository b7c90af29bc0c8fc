"""What an attempt's answer means for the message: pure, like `runtime.retry`.

2xx                                   delivered: ack
5xx, 408, 429, no answer (timeout…)   retry in the next delay tier; a Retry-After
                                      (seconds or an HTTP date) picks the first tier
                                      at least that long, or the longest
any other status (3xx, 4xx)           permanent: dead-letter at once
tiers spent                           dead-letter (retries-exhausted)
"""

from __future__ import annotations

from datetime import datetime

from workers.errors import Reject, Retry
from workers.http import retry_after
from workers.runtime.retry import Decision, RetryRules
from workers.webhooks.errors import DeliveryFailed
from workers.webhooks.sender import Attempt

#: Statuses that say "try again later" besides the 5xx.
RETRYABLE = frozenset({408, 425, 429})


def decide(
    attempt: Attempt, rules: RetryRules, retries_done: int, *, now: datetime | None = None
) -> Decision | None:
    """None when delivered; else where the message goes (a retry tier, or parked)."""
    if attempt.delivered:
        return None
    return rules.decide(failure(attempt, now=now), retries_done)


def failure(attempt: Attempt, *, now: datetime | None = None) -> Exception:
    """The attempt as the error `RetryRules.decide` understands."""
    if attempt.status is None:
        return DeliveryFailed(attempt.error or "no answer")
    status = attempt.status
    answered = f"receiver answered {status}" + (f" {attempt.error}" if attempt.error else "")
    if status >= 500 or status in RETRYABLE:
        wait = retry_after(attempt.retry_after, now=now)
        if wait is not None:
            return Retry(f"{answered} (Retry-After: {attempt.retry_after})", delay=wait)
        return DeliveryFailed(answered)
    if 300 <= status < 400:
        return Reject(f"{answered}: redirects are not followed; subscribe the final URL")
    return Reject(f"{answered}: not retried")
