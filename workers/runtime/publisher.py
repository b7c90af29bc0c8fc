"""Publishing with publisher confirms, where a returned message counts as a failure.

RabbitMQ confirms an unroutable message too, so follow-on events go out with
`mandatory` and a basic.return fails the publish. Concurrent publishes on one
channel pipeline: each awaits only its own confirm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel
from pamqp import commands as spec_commands
from pamqp.commands import Basic

from contracts import Event, encode
from workers.errors import PublishFailed
from workers.runtime import headers as h

JSON = "application/json"
PERSISTENT = 2


def follow_on_id(parent_id: str, worker: str, index: int, event: Event) -> str:
    """The id of a handler's `index`-th follow-on event.

    Derived from the message that caused it, so a redelivered cause emits the
    same ids again and the consumers downstream dedupe them.
    """
    seed = f"{parent_id}\x00{worker}\x00{index}\x00{event.__wire_name__}".encode()
    return hashlib.blake2b(seed, digest_size=16).hexdigest()


def event_properties(
    event: Event,
    *,
    message_id: str,
    correlation_id: str,
    causation_id: str | None = None,
    app_id: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
) -> Basic.Properties:
    """The AMQP properties of fleet's wire format for one event."""
    headers: dict[str, Any] = {h.VERSION: event.__version__}
    if causation_id is not None:
        headers[h.CAUSATION_ID] = causation_id
    if extra_headers:
        headers.update(extra_headers)
    return Basic.Properties(
        content_type=JSON,
        delivery_mode=PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        message_type=event.__wire_name__,
        timestamp=datetime.now(UTC),
        headers=headers,
        app_id=app_id,
    )


class Publisher:
    """Publishes on one confirm-mode channel and waits for each confirm.

    Args:
        channel: an aiormq channel opened with publisher confirms and
            `on_return_raises` (aio-pika: ``channel(publisher_confirms=True,
            on_return_raises=True)``).
        app_id: written to every message's `app_id` (the worker's name).
    """

    def __init__(self, channel: AbstractChannel, *, app_id: str | None = None):
        self._channel = channel
        self.app_id = app_id

    async def publish_event(
        self,
        event: Event,
        *,
        exchange: str,
        message_id: str,
        correlation_id: str,
        causation_id: str | None = None,
        mandatory: bool = True,
    ) -> None:
        """Publish one event and wait for its confirm.

        Raises:
            PublishFailed: the broker nacked it, or returned it as unroutable.
        """
        properties = event_properties(
            event,
            message_id=message_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
            app_id=self.app_id,
        )
        await self.publish(
            encode(event),
            exchange=exchange,
            routing_key=event.__routing_key__,
            properties=properties,
            mandatory=mandatory,
        )

    async def publish(
        self,
        body: bytes,
        *,
        exchange: str,
        routing_key: str,
        properties: Basic.Properties,
        mandatory: bool = True,
    ) -> None:
        """Publish raw bytes and wait for the confirm; see `publish_event`."""
        try:
            confirmation = await self._channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
            )
        except aiormq.exceptions.PublishError as exc:
            reply = getattr(exc.frame, "reply_text", "returned")
            raise PublishFailed(
                f"{reply.lower()}: nothing is bound to exchange {exchange!r} "
                f"for routing key {routing_key!r}"
            ) from None
        if not isinstance(confirmation, spec_commands.Basic.Ack):
            raise PublishFailed(
                f"the broker refused the message for exchange {exchange!r} "
                f"(routing key {routing_key!r}): {type(confirmation).__name__}"
            )
