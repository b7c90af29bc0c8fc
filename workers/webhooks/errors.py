"""Errors of the webhook dispatcher.

WorkerError
└── WebhookError
    ├── WebhookConfigError   a subscription cannot run: unknown name, secrets unset or invalid
    ├── DestinationRefused   the URL resolves to an internal address (SSRF guard): permanent
    └── DeliveryFailed       no usable answer (connection, timeout, 5xx): retried
"""

from __future__ import annotations

from workers.errors import WorkerError


class WebhookError(WorkerError):
    """Base of the webhook dispatcher's errors."""


class WebhookConfigError(WebhookError):
    """A subscription cannot run: unknown name, or its secrets are unset or invalid."""


class DestinationRefused(WebhookError):
    """The destination is on an internal address the subscription does not allow."""


class DeliveryFailed(WebhookError):
    """The receiver could not be reached or answered with a transient failure."""
