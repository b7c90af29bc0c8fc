"""The relay's Prometheus metrics, labelled by outbox name.

Gauges are read from the table every few seconds by every relay, active or
standby, on a connection of their own, so they stay true while the broker is
down, which is when the oldest row's age matters. The counters are this
process's own publishes and parks. Only the relay imports this module.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

_LABELS = ["outbox"]

DEPTH = Gauge("fleet_outbox_depth", "Committed outbox rows not yet published.", _LABELS)
OLDEST = Gauge(
    "fleet_outbox_oldest_unsent_seconds",
    "Age in seconds of the oldest unpublished outbox row (0 when there is none).",
    _LABELS,
)
PARKED = Gauge(
    "fleet_outbox_parked", "Outbox rows set aside as unroutable, awaiting an operator.", _LABELS
)
ACTIVE = Gauge(
    "fleet_outbox_relay_active", "1 while this relay holds the outbox's relay lock.", _LABELS
)
PUBLISHED = Counter(
    "fleet_outbox_published", "Outbox rows this relay published and saw confirmed.", _LABELS
)
PARKED_ROWS = Counter(
    "fleet_outbox_parked_rows", "Outbox rows this relay parked (returned by the broker).", _LABELS
)
