"""What an HTTP downstream tells a handler about when to come back.

answer = await http.post(...)
if answer.status_code in (429, 503) and (wait := retry_after(answer.headers.get("Retry-After"))):
    raise Retry(f"gateway answered {answer.status_code}", after=wait)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime


def retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """A Retry-After header (delay in seconds, or an HTTP date) as a wait; None if
    absent, unreadable or already past."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = min(int(text), 365 * 86_400)  # a year is past any tier; timedelta overflows
        return timedelta(seconds=seconds) if seconds > 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = when - (now or datetime.now(UTC))
    return wait if wait > timedelta(0) else None
