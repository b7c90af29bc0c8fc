"""What fleet last applied to a vhost, kept inside the broker itself.

`plan` needs it to tell *create* (never applied) from *drift* (applied, then
changed or deleted by hand), and to know which bindings it made and may
remove. The record is the single message of the classic durable queue
RECORD_QUEUE: with ``x-max-length: 1`` each new record pushes out the last,
and reading peeks at it through the management API without consuming it.
Keeping it in the broker means it travels with the vhost: no file to lose, no
database to share between the machines that run `apply`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel

from topology.management import Management
from topology.names import RECORD_QUEUE
from topology.resources import Resources

RECORD_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic", "x-max-length": 1}
RECORD_TYPE = "fleet.topology-record"


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """The last applied topology.

    Attributes:
        resources: every object apply declared, as `expand` produced them.
        applied_at: when (timezone-aware).
        file_sha256: the topology file's digest, when apply was given one.
    """

    resources: Resources
    applied_at: datetime
    file_sha256: str | None = None


def read_record(management: Management) -> Record | None:
    """The record of the management client's vhost; None if fleet never applied there.

    A record that cannot be decoded (written by hand, or by another program)
    also counts as none: plan then shows creates and changes instead of drift,
    and never removes a binding, which is the cautious reading.

    Raises:
        BrokerUnreachable: the management API cannot be reached or refuses the user.
    """
    messages = management.peek(RECORD_QUEUE)
    if not messages:
        return None
    try:
        return msgspec.json.decode(messages[0].payload, type=Record)
    except msgspec.DecodeError:
        return None


async def write_record(channel: AbstractChannel, record: Record) -> None:
    """Replace the record with `record`; returns once the broker confirmed it.

    The channel must have publisher confirms on (aio-pika's default).
    """
    await channel.declare_queue(RECORD_QUEUE, durable=True, arguments=RECORD_ARGUMENTS)
    message = aio_pika.Message(
        msgspec.json.encode(record),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        type=RECORD_TYPE,
        timestamp=record.applied_at,
        app_id="fleet",
    )
    await channel.default_exchange.publish(message, routing_key=RECORD_QUEUE)
