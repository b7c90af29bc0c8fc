"""Publishing with publisher confirms, where a returned message counts as a failure.

RabbitMQ confirms an unroutable message too, so follow-on events go out with
`mandatory` and a basic.return fails the publish. Concurrent publishes on one
channel pipeline: each awaits only its own confirm.

Messages are marshalled by `wire` and queued by `sending.FrameSender`, which
together cost a fraction of aiormq's `basic_publish`; on a channel the sender
cannot drive, `basic_publish` is used.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel
from pamqp import commands as spec_commands
from pamqp.commands import Basic

from workers.errors import PublishFailed, PublishNacked
from workers.observability.metrics import Histogram
from workers.runtime import fastpath
from workers.runtime.fastpath.sending import FrameSender
from workers.runtime.fastpath.wire import publish_frames, publish_frames_for
from workers.runtime.outgoing import Outgoing


class Publisher:
    """Publishes on one confirm-mode channel and waits for each confirm.

    Args:
        channel: an aiormq channel opened with publisher confirms and
            `on_return_raises` (aio-pika: ``channel(publisher_confirms=True,
            on_return_raises=True)``).
        app_id: written to every message's `app_id` (the worker's name).
        confirm_seconds: where confirmed publishes' latencies go (metrics), if anywhere.
    """

    def __init__(
        self,
        channel: AbstractChannel,
        *,
        app_id: str | None = None,
        confirm_seconds: Histogram | None = None,
    ):
        self._channel = channel
        # The fast path queues pre-marshalled publishes itself (workers.runtime.fastpath).
        self._sender = FrameSender.on(channel) if fastpath.enabled() else None
        self.app_id = app_id
        self._confirm_seconds = confirm_seconds

    async def publish_outgoing(self, message: Outgoing) -> None:
        """Publish a prepared follow-on message and wait for its confirm.

        Raises:
            PublishFailed: the broker nacked it, or returned it as unroutable.
        """
        sender = self._sender
        if sender is None:
            await self.publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=message.properties(),
                mandatory=message.mandatory,
            )
            return
        frames = publish_frames(message, sender.number, sender.max_body_frame)
        await self._confirmed(
            sender.send(frames, message.message_id), message.exchange, message.routing_key
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
        """Publish raw bytes and wait for the confirm; see `publish_outgoing`."""
        sender = self._sender
        if sender is None or not properties.message_id:
            # aiormq gives a message without an id one: returns are matched by id.
            sent = self._channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
            )
        else:
            frames = publish_frames_for(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                channel=sender.number,
                max_body_frame=sender.max_body_frame,
            )
            sent = sender.send(frames, properties.message_id)
        await self._confirmed(sent, exchange, routing_key)

    async def _confirmed(self, sent: Awaitable[Any], exchange: str, routing_key: str) -> None:
        """Await a publish's confirm; a return or a nack raises PublishFailed."""
        started = time.perf_counter()
        try:
            confirmation = await sent
        except aiormq.exceptions.PublishError as exc:
            reply = getattr(exc.frame, "reply_text", "returned")
            raise PublishFailed(
                f"{reply.lower()}: nothing is bound to exchange {exchange!r} "
                f"for routing key {routing_key!r}"
            ) from None
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishNacked(
                f"the broker refused the message for exchange {exchange!r} "
                f"(routing key {routing_key!r}): {type(exc.frame).__name__}"
            ) from None
        if not isinstance(confirmation, spec_commands.Basic.Ack):
            raise PublishNacked(
                f"the broker refused the message for exchange {exchange!r} "
                f"(routing key {routing_key!r}): {type(confirmation).__name__}"
            )
        if self._confirm_seconds is not None:
            self._confirm_seconds.observe(time.perf_counter() - started)
