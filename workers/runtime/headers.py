"""The AMQP header names fleet reads and writes, in one place.

Plain clients set only `version` (and, for follow-ons, fleet sets
`causation-id`); the `x-fleet-*` headers describe retries and dead letters.
"""

from __future__ import annotations

VERSION = "version"
CAUSATION_ID = "causation-id"
# The publish time in milliseconds (the name RabbitMQ's message-timestamp plugin
# uses): the AMQP `timestamp` property has whole seconds only.
TIMESTAMP_MS = "timestamp_in_ms"
# W3C trace context, so one saga is one trace (any AMQP client may set them).
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

ATTEMPTS = "x-fleet-attempts"  # handler calls so far, across every tier
RETRIES = "x-fleet-retries"  # broker-delayed redeliveries so far
DELIVERIES = "x-fleet-deliveries"  # crash-suspect redeliveries (classic queues)
ORIGINAL_EXCHANGE = "x-fleet-original-exchange"
ORIGINAL_ROUTING_KEY = "x-fleet-original-routing-key"
FIRST_FAILURE = "x-fleet-first-failure"
LAST_FAILURE = "x-fleet-last-failure"
ERROR_TYPE = "x-fleet-error-type"
ERROR_MESSAGE = "x-fleet-error"
# decode | unknown-type | invalid-version | undecodable-properties | permanent
# | retries-exhausted | crash-loop | internal
REASON = "x-fleet-reason"
WORKER = "x-fleet-worker"
QUEUE = "x-fleet-queue"
# Set by the frame decoder when a property of the delivery could not be
# decoded (a timestamp out of range, a malformed header table): what was wrong.
UNDECODABLE = "x-fleet-undecodable"
# On a stream worker's parked message: the stream (partition) and offset it was read at.
STREAM = "x-fleet-stream"
STREAM_OFFSET = "x-fleet-stream-offset"
STREAM_TIMESTAMP = "x-fleet-stream-timestamp"  # ms: when the broker stored its chunk
# On a failure copy whose original headers could not be written back: why not.
DROPPED_HEADERS = "x-fleet-dropped-headers"

#: Every header fleet adds on failure; `fleet dlq replay` removes them to reset attempts.
FAILURE_HEADERS = (
    ATTEMPTS,
    RETRIES,
    DELIVERIES,
    FIRST_FAILURE,
    LAST_FAILURE,
    ERROR_TYPE,
    ERROR_MESSAGE,
    REASON,
    WORKER,
    QUEUE,
    STREAM,
    STREAM_OFFSET,
    STREAM_TIMESTAMP,
)
