"""Signed outbound webhooks: subscriptions in the topology file, delivered by
`fleet webhooks run`.

Each subscription (`webhooks.<name>` in the file) gets a queue `webhook.<name>`
bound to its events' routing keys. The dispatcher POSTs each event's body
unchanged, signed per Standard Webhooks, retries failures through the queue's
delay tiers (honouring Retry-After), dead-letters permanent failures and
exhausted retries with the reason, refuses internal destinations unless
allowed, and records every attempt (`fleet webhooks deliveries`).
"""

from workers.webhooks.errors import (
    DeliveryFailed,
    DestinationRefused,
    WebhookConfigError,
    WebhookError,
)
from workers.webhooks.records import DeliveryRecord, NoRecords, PostgresRecords
from workers.webhooks.service import run_dispatchers
from workers.webhooks.subscription import Subscription, resolve

__all__ = [
    # Running
    "Subscription",
    "resolve",
    "run_dispatchers",
    # Records
    "DeliveryRecord",
    "NoRecords",
    "PostgresRecords",
    # Errors
    "DeliveryFailed",
    "DestinationRefused",
    "WebhookConfigError",
    "WebhookError",
]
