"""Caller-given ids the ingress has seen recently, so a repeat is not published again.

Providers retry a webhook when they did not see our answer, and a captured
request can be replayed within its signature's tolerance. Both carry the same
id (Idempotency-Key, webhook-id, X-GitHub-Delivery, the Stripe event id), which
is also the message id, so workers would dedupe it anyway; remembering it here
keeps the repeat off the broker and tells the caller what happened.

Memory only, per ingress process: across replicas and restarts the message
id (deduplicated by every worker's inbox) is the guarantee.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass


class Seen(enum.Enum):
    """What the ingress knows of an id when a request carrying it arrives."""

    NEW = "new"
    #: Accepted earlier with the same body: answer again, publish nothing.
    DUPLICATE = "duplicate"
    #: Accepted earlier with a different body: the id was reused by mistake.
    CONFLICT = "conflict"
    #: Another request with this id is being published right now.
    IN_PROGRESS = "in-progress"


@dataclass
class _Entry:
    digest: bytes
    expires: float
    accepted: bool


class RecentIds:
    """A bounded, expiring record of ids per route: the oldest are forgotten first."""

    def __init__(self, max_entries: int = 100_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def begin(self, route: str, message_id: str, body: bytes, window: float) -> Seen:
        """Note that a request with `message_id` is about to be published.

        Returns NEW (go ahead; follow with `accepted` or `abandon`) or what
        the earlier request with this id says about this one.
        """
        now = time.monotonic()
        key = (route, message_id)
        digest = hashlib.sha256(body).digest()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            if not entry.accepted:
                return Seen.IN_PROGRESS
            return Seen.DUPLICATE if entry.digest == digest else Seen.CONFLICT
        self._entries[key] = _Entry(digest, now + window, accepted=False)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return Seen.NEW

    def accepted(self, route: str, message_id: str) -> None:
        """The broker confirmed the event: repeats are duplicates from now on."""
        entry = self._entries.get((route, message_id))
        if entry is not None:
            entry.accepted = True

    def abandon(self, route: str, message_id: str) -> None:
        """The publish failed: a retry with this id must be published."""
        self._entries.pop((route, message_id), None)
