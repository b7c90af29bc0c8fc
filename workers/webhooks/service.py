"""The dispatcher process: one connection, and per subscription a consume channel
and an HTTP client of its own (its connections, pinned to checked addresses, are
never reused for another subscription's host); consume until told to stop,
reconnect whenever the broker goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import aiormq
import httpx
import structlog
from aio_pika.abc import AbstractConnection

from topology.names import failure_exchange
from workers.runtime.connection import (
    CONNECTION_ERRORS,
    first_missing_exchange,
    first_missing_queue,
    open_channels,
)
from workers.runtime.consumer import Consumer
from workers.runtime.hooks import Observers
from workers.runtime.nodes import NodeRing
from workers.runtime.publisher import Publisher
from workers.runtime.reconnect import Connected, keep_connected
from workers.runtime.shutdown import Shutdown
from workers.runtime.waiting import wait_any
from workers.webhooks.dispatcher import WebhookLog, WebhookStage
from workers.webhooks.errors import WebhookError
from workers.webhooks.records import Records
from workers.webhooks.subscription import Subscription

log = structlog.get_logger("fleet.webhooks")


class QueueMissing(WebhookError):
    """A subscription's queue or failure exchange has not been provisioned (`fleet topology
    apply`)."""


async def run_dispatchers(
    subscriptions: Sequence[Subscription],
    url: str,
    *,
    records: Records,
    shutdown: Shutdown,
    drain_timeout: float = 30.0,
    ready: asyncio.Event | None = None,
) -> list[WebhookLog]:
    """Deliver every subscription until `shutdown` is requested.

    Returns:
        Each subscription's log of the last connection, with its counters.

    Raises:
        QueueMissing: the topology was not applied to this broker.
        BrokerRefused: the broker refused the login or the TLS handshake.
    """
    dispatchers: list[WebhookLog] = []
    await records.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                s.name: await stack.enter_async_context(
                    httpx.AsyncClient(
                        follow_redirects=False,
                        limits=httpx.Limits(max_connections=s.concurrency),
                    )
                )
                for s in subscriptions
            }

            async def session(connection: AbstractConnection, connected: Connected) -> bool:
                nonlocal dispatchers
                lost, dispatchers = await _consume(
                    connection,
                    subscriptions,
                    clients,
                    records,
                    shutdown,
                    drain_timeout,
                    connected,
                    ready,
                )
                return lost

            await keep_connected(
                NodeRing(url), session, name="fleet webhooks", stop=shutdown.requested
            )
    finally:
        await records.close()
    return dispatchers


async def _consume(
    connection: AbstractConnection,
    subscriptions: Sequence[Subscription],
    clients: dict[str, httpx.AsyncClient],
    records: Records,
    shutdown: Shutdown,
    drain_timeout: float,
    connected: Connected,
    ready: asyncio.Event | None,
) -> tuple[bool, list[WebhookLog]]:
    """Consume on one connection; (lost, logs): lost is False on a requested stop."""
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    await _check_queues(connection, subscriptions)
    dispatchers: list[WebhookLog] = []
    consumers: list[tuple[Consumer, aiormq.abc.AbstractChannel, str]] = []
    for subscription in subscriptions:
        channels = await open_channels(connection, prefetch=subscription.prefetch)
        for wrapper in channels.wrappers:
            wrapper.close_callbacks.add(lambda *_: lost.set())
        webhook_log = WebhookLog(subscription.name)
        consumer = Consumer(
            stage=WebhookStage(subscription, client=clients[subscription.name], records=records),
            queue=subscription.queue,
            channel=channels.consume,
            publisher=Publisher(channels.publish, app_id="fleet.webhooks"),
            observers=Observers([webhook_log]),
            concurrency=subscription.concurrency,
            ack_batch=min(64, max(1, subscription.prefetch // 4)),
        )
        log.info(
            "webhooks.consuming",
            subscription=subscription.name,
            queue=subscription.queue,
            url=subscription.url,
            attempts=subscription.attempts,
            secrets=len(subscription.secrets),
        )
        ok = await channels.consume.basic_consume(subscription.queue, consumer.on_message)
        dispatchers.append(webhook_log)
        consumers.append((consumer, channels.consume, ok.consumer_tag or ""))
    connected.began()
    if ready is not None:
        ready.set()
    await wait_any(shutdown.requested, lost)
    if lost.is_set() and not shutdown.requested.is_set():
        return True, dispatchers
    try:
        for _, channel, tag in consumers:
            await channel.basic_cancel(tag)
    except CONNECTION_ERRORS:
        return True, dispatchers
    drained = await asyncio.gather(*(d.drain(drain_timeout) for d, _, _ in consumers))
    log.info(
        "webhooks.stopped",
        drained=all(drained),
        delivered=sum(d.counters.delivered for d in dispatchers),
        retried=sum(d.counters.retried for d in dispatchers),
        dead_lettered=sum(d.counters.dead_lettered for d in dispatchers),
    )
    return False, dispatchers


async def _check_queues(
    connection: AbstractConnection, subscriptions: Sequence[Subscription]
) -> None:
    """Refuse to start against a broker the topology was not applied to."""
    missing = await first_missing_queue(connection, [q for s in subscriptions for q in s.queues])
    if missing is not None:
        raise QueueMissing(
            f"queue {missing!r} does not exist on this broker: run `fleet topology apply` first"
        )
    exchange = await first_missing_exchange(
        connection, [failure_exchange(s.queue) for s in subscriptions]
    )
    if exchange is not None:
        raise QueueMissing(
            f"exchange {exchange!r} does not exist on this broker: run `fleet topology apply` first"
        )
