"""The fault event a parked message announces, when its worker's topology asks.

A choreography has no coordinator to notice that one step parked a message:
the other steps would go on, and a saga could end confirmed while one of its
events sits in a dead-letter queue. A `Fault[<contract>]` on the worker's
`faults` exchange tells whoever binds to ``fault.<routing key>`` (see
`contracts.faults`). Only messages whose contract the worker handles are
announced: of anything else it cannot say what it was.

The fault's message id is derived from the parked message's and the worker's,
so parking the same message again (after a replay, or a crash mid-settle)
announces it under the same id, and consumers' inboxes dedupe it.
"""

from __future__ import annotations

from typing import Any

from contracts import Event
from contracts.faults import Fault
from workers.runtime.delivery import Delivery
from workers.runtime.outgoing import Outgoing, follow_on_id, outgoing_event
from workers.runtime.retry import Park
from workers.worker import HandlerSpec


def fault_message(
    delivery: Delivery,
    decision: Park,
    handler: HandlerSpec[Any],
    original: Event | None,
    *,
    exchange: str,
    worker: str,
    queue: str,
    app_id: str | None,
) -> Outgoing:
    """The `Fault[<contract>]` announcing that `delivery` was parked for `decision`;
    `original` is the message as its handler would have seen it (None: it never got
    that far)."""
    event_type = handler.event_type
    fault = Fault.of(event_type)(
        message_type=event_type.__wire_name__,
        message_version=event_type.__version__,
        message_id=delivery.message_id,
        correlation_id=delivery.correlation_id,
        reason=decision.reason,
        error_type=decision.error_type,
        error=decision.message,
        worker=worker,
        queue=queue,
        message=original,
    )
    return outgoing_event(
        fault,
        exchange=exchange,
        message_id=follow_on_id(delivery.message_id, worker, 0, fault),
        correlation_id=delivery.correlation_id,
        causation_id=delivery.message_id,
        # Nobody need listen: the message itself is parked, safe, either way.
        mandatory=False,
        app_id=app_id,
    )
