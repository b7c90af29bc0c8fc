"""The dispatcher process: one connection, and per subscription a consume channel
and an HTTP client of its own (its connections, pinned to checked addresses, are
never reused for another subscription's host); consume until told to stop,
reconnect whenever the broker goes away."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence

import aiormq
import httpx
import structlog
from aio_pika.abc import AbstractConnection

from topology import BrokerUnreachable
from workers.runtime.connection import (
    CONNECTION_ERRORS,
    connect,
    first_missing_queue,
    open_channels,
)
from workers.runtime.publisher import Publisher
from workers.runtime.shutdown import Shutdown
from workers.runtime.waiting import wait_any
from workers.webhooks.dispatcher import Dispatcher
from workers.webhooks.errors import WebhookError
from workers.webhooks.records import Records
from workers.webhooks.subscription import Subscription

log = structlog.get_logger("fleet.webhooks")

MAX_RECONNECT_DELAY = 30.0


class QueueMissing(WebhookError):
    """A subscription's queue has not been provisioned (`fleet topology apply`)."""


async def run_dispatchers(
    subscriptions: Sequence[Subscription],
    url: str,
    *,
    records: Records,
    shutdown: Shutdown,
    drain_timeout: float = 30.0,
    ready: asyncio.Event | None = None,
) -> list[Dispatcher]:
    """Deliver every subscription until `shutdown` is requested.

    Returns:
        The last connection's dispatchers, with their counters.

    Raises:
        QueueMissing: the topology was not applied to this broker.
    """
    dispatchers: list[Dispatcher] = []
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
            failures = 0
            while not shutdown.requested.is_set():
                try:
                    connection = await connect(url, name="fleet webhooks")
                except BrokerUnreachable as exc:
                    failures += 1
                    delay = random.uniform(0.1, min(MAX_RECONNECT_DELAY, 0.5 * 2 ** (failures - 1)))
                    log.warning("broker.unreachable", error=str(exc), retry_in=round(delay, 2))
                    await wait_any(shutdown.requested, seconds=delay)
                    continue
                failures = 0
                try:
                    lost, dispatchers = await _consume(
                        connection, subscriptions, clients, records, shutdown, drain_timeout, ready
                    )
                except CONNECTION_ERRORS as exc:
                    lost = True
                    log.warning("broker.connection_lost", error=str(exc))
                finally:
                    if not connection.is_closed:
                        await connection.close()
                if lost:
                    await wait_any(shutdown.requested, seconds=random.uniform(0.1, 0.5))
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
    ready: asyncio.Event | None,
) -> tuple[bool, list[Dispatcher]]:
    """Consume on one connection; (lost, dispatchers): lost is False on a requested stop."""
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    await _check_queues(connection, subscriptions)
    dispatchers: list[Dispatcher] = []
    consumers: list[tuple[Dispatcher, aiormq.abc.AbstractChannel, str]] = []
    for subscription in subscriptions:
        channels = await open_channels(connection, prefetch=subscription.prefetch)
        for wrapper in channels.wrappers:
            wrapper.close_callbacks.add(lambda *_: lost.set())
        dispatcher = Dispatcher(
            subscription,
            channel=channels.consume,
            publisher=Publisher(channels.publish, app_id="fleet.webhooks"),
            client=clients[subscription.name],
            records=records,
        )
        log.info(
            "webhooks.consuming",
            subscription=subscription.name,
            queue=subscription.queue,
            url=subscription.url,
            attempts=subscription.attempts,
            secrets=len(subscription.secrets),
        )
        ok = await channels.consume.basic_consume(subscription.queue, dispatcher.on_message)
        dispatchers.append(dispatcher)
        consumers.append((dispatcher, channels.consume, ok.consumer_tag or ""))
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
