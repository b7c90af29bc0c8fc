"""Every name fleet derives from a queue's name, in one place."""

from __future__ import annotations

from topology.duration import Duration

RETRY_INFIX = ".retry."
WEBHOOK_PREFIX = "webhook."
DEAD_SUFFIX = ".dead"
#: The queue holding the last applied topology (see `topology.record`).
RECORD_QUEUE = "fleet.topology"


def retry_queue(queue: str, delay: Duration) -> str:
    """``inventory`` + 30s → ``inventory.retry.30s``: holds a message for `delay`, then
    dead-letters it back to `queue` only."""
    return f"{queue}{RETRY_INFIX}{delay}"


def dead_letter_queue(queue: str) -> str:
    """``inventory`` → ``inventory.dead``: where messages that cannot be processed are parked."""
    return f"{queue}{DEAD_SUFFIX}"


def is_derived(name: str) -> bool:
    """Whether a queue name is one fleet derives (retry or dead-letter)."""
    return RETRY_INFIX in name or name.endswith(DEAD_SUFFIX)


def origin_queue(name: str) -> str | None:
    """``inventory.retry.30s`` or ``inventory.dead`` → ``inventory``; None for other names."""
    if name.endswith(DEAD_SUFFIX):
        return name[: -len(DEAD_SUFFIX)]
    head, sep, _ = name.rpartition(RETRY_INFIX)
    return head if sep else None


def webhook_queue(subscription: str) -> str:
    """``notifications`` → ``webhook.notifications``: the queue a webhook subscription's
    dispatcher consumes (with retry tiers and a dead-letter queue like any work queue)."""
    return f"{WEBHOOK_PREFIX}{subscription}"
