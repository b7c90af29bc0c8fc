"""Every name fleet derives from a queue's name, in one place."""

from __future__ import annotations

from topology.duration import Duration

RETRY_INFIX = ".retry."
WEBHOOK_PREFIX = "webhook."
DEAD_SUFFIX = ".dead"
FAILURES_SUFFIX = ".failures"
LOCK_PREFIX = "fleet.lock."
#: The queue holding the last applied topology (see `topology.record`).
RECORD_QUEUE = "fleet.topology"


def retry_queue(queue: str, delay: Duration) -> str:
    """``inventory`` + 30s → ``inventory.retry.30s``: holds a message for `delay`, then
    dead-letters it back to `queue` only."""
    return f"{queue}{RETRY_INFIX}{delay}"


def dead_letter_queue(queue: str) -> str:
    """``inventory`` → ``inventory.dead``: where messages that cannot be processed are parked."""
    return f"{queue}{DEAD_SUFFIX}"


def failure_exchange(queue: str) -> str:
    """``inventory`` → ``inventory.failures``: the direct exchange a queue's consumers publish
    their failure copies to (a retry, a parked message, a recounted one), each routed by the
    target queue's name to that queue alone.

    Not the default exchange: publishing there needs write on ``amq.default``, which would
    let a process put messages into any queue of the vhost.
    """
    return f"{queue}{FAILURES_SUFFIX}"


def stream_worker_base(stream: str, worker: str) -> str:
    """``order-events`` + ``reporting`` → ``order-events.reporting``: what a stream
    worker's dead-letter queue and failure exchange are named after. Not the stream's
    own name: many workers read one stream, each parks in a queue of its own."""
    return f"{stream}.{worker}"


def stream_lock_queue(stream: str, consumer: str) -> str:
    """``order-events-0`` + ``reporting`` → ``fleet.lock.order-events-0.reporting``: the
    exclusive queue whose owner is the one replica reading that stream as that consumer."""
    return f"{LOCK_PREFIX}{stream}.{consumer}"


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


#: The processes besides the workers that get a broker user of their own under
#: `access.users`.
INGRESS_PROCESS = "ingress"
WEBHOOKS_PROCESS = "webhooks"
OUTBOX_PROCESS = "outbox"
PASSWORD_VARIABLE_PREFIX = "FLEET_PASSWORD_"


def broker_user(prefix: str, process: str) -> str:
    """``fleet-`` + ``orders`` → ``fleet-orders``: the RabbitMQ user of a worker, or of the
    ingress or webhook dispatcher, under `access.users`."""
    return f"{prefix}{process}"


def password_variable(user: str) -> str:
    """``fleet-orders`` → ``FLEET_PASSWORD_FLEET_ORDERS``: the environment variable holding
    that user's password (upper case, every character but letters and digits an ``_``)."""
    return PASSWORD_VARIABLE_PREFIX + "".join(c if c.isalnum() else "_" for c in user.upper())
