"""One worker process: connect, check the queues exist, consume until told to
stop, and reconnect whenever the broker goes away."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from aio_pika.abc import AbstractConnection

from topology import BrokerUnreachable, Topology
from topology.names import dead_letter_queue, retry_queue
from workers.errors import WorkerError
from workers.loader import load_exception_classes, load_worker
from workers.observability import context as trace_context
from workers.runtime.connection import (
    CONNECTION_ERRORS,
    connect,
    first_missing_queue,
    open_channels,
)
from workers.runtime.consumer import Consumer, Counters
from workers.runtime.inbox import Inbox, MemoryInbox, PostgresInbox
from workers.runtime.nodes import NodeRing, node_label
from workers.runtime.publisher import Publisher
from workers.runtime.retry import RetryRules
from workers.runtime.shutdown import Shutdown
from workers.runtime.waiting import wait_any
from workers.worker import Resources, Worker

if TYPE_CHECKING:
    from workers.observability.observer import Observer

log = structlog.get_logger("fleet.worker")

MAX_RECONNECT_DELAY = 30.0
MAX_POOL = 10


@dataclass
class WorkerSettings:
    """Everything one worker process needs, resolved from the topology and the CLI."""

    name: str
    worker: Worker
    topology: Topology
    url: str
    prefetch: int
    concurrency: int
    drain_timeout: float = 30.0
    database_url: str | None = None
    # Prometheus: None counts nothing; 0 counts without serving (tests, embedding);
    # a port serves /metrics there.
    metrics_port: int | None = None
    management_url: str | None = None

    @classmethod
    def from_topology(
        cls,
        topology: Topology,
        name: str,
        url: str,
        *,
        prefetch: int | None = None,
        concurrency: int | None = None,
        drain_timeout: float = 30.0,
        database_url: str | None = None,
        metrics_port: int | None = None,
        management_url: str | None = None,
    ) -> WorkerSettings:
        """Settings for worker `name`, the CLI's overrides winning over the file."""
        spec = topology.worker(name)
        return cls(
            name=name,
            worker=load_worker(name, spec),
            topology=topology,
            url=url,
            prefetch=prefetch or spec.prefetch,
            concurrency=concurrency or spec.concurrency,
            drain_timeout=drain_timeout,
            database_url=database_url,
            metrics_port=metrics_port,
            management_url=management_url,
        )

    def make_observer(self) -> Observer | None:
        """The worker's metrics and lag poller, or None when metrics are off."""
        if self.metrics_port is None:
            return None
        # Imported here: without metrics a worker never loads prometheus-client or httpx.
        from workers.observability.observer import Observer

        return Observer(
            self.worker,
            self.topology.worker(self.name).queue,
            self.topology,
            port=self.metrics_port or None,
            url=self.url,
            management_url=self.management_url,
            lag_interval=self.topology.metrics.lag_interval.seconds,
        )

    def make_inbox(self) -> Inbox:
        """PostgreSQL when a database is configured, else this process's memory."""
        if self.database_url is None:
            return MemoryInbox()
        spec = self.topology.worker(self.name)
        return PostgresInbox(
            self.database_url,
            worker=self.name,
            retention=spec.inbox_retention.timedelta,
            # Handlers beyond the pool wait for a connection; PostgreSQL's default
            # max_connections (100) is shared by every worker process.
            pool_size=min(self.concurrency + 2, MAX_POOL),
            commit_batch=spec.commit_batch,
        )


class QueueMissing(WorkerError):
    """A queue the worker needs has not been provisioned."""


async def run_worker(
    settings: WorkerSettings, shutdown: Shutdown, *, ready: asyncio.Event | None = None
) -> Counters:
    """Consume until `shutdown` is requested; returns what was done.

    Raises:
        QueueMissing: the topology was not applied to this broker.
    """
    spec = settings.topology.worker(settings.name)
    queue = settings.topology.queues[spec.queue]
    rules = RetryRules(
        spec.queue, queue.retry, load_exception_classes(settings.name, spec.permanent_errors)
    )
    counters = Counters()
    inbox = settings.make_inbox()
    await inbox.start()
    log.info(
        "worker.inbox",
        worker=settings.name,
        kind=type(inbox).__name__,
        deduplicates="across processes and restarts"
        if settings.database_url
        else "redeliveries to this process only",
        # Which deliveries share an inbox transaction (README: group commit).
        commit_batch=getattr(inbox, "commit_batch", None),
    )
    resources = Resources(settings.name, getattr(inbox, "pool", None))
    for hook in settings.worker.startup_hooks:
        await hook(resources)
    observer = settings.make_observer()
    if observer is not None:
        observer.start()
    nodes = NodeRing(settings.url)
    # When the last connection was lost: the failover time is logged once consuming again.
    lost_at: float | None = None
    try:
        failures = 0
        while not shutdown.requested.is_set():
            try:
                connection = await connect(nodes, name=f"fleet worker {settings.name}")
            except BrokerUnreachable as exc:
                failures += 1
                delay = _backoff(failures)
                log.warning(
                    "broker.unreachable",
                    worker=settings.name,
                    error=str(exc),
                    retry_in=round(delay, 2),
                )
                await wait_any(shutdown.requested, seconds=delay)
                continue
            failures = 0
            polling = observer.polling(connection) if observer is not None else None
            consuming = _Consuming(settings.name, nodes, lost_at, ready)
            try:
                lost = await _consume(
                    connection, settings, rules, inbox, counters, shutdown, consuming, observer
                )
            except CONNECTION_ERRORS as exc:
                lost = True
                log.warning("broker.connection_lost", worker=settings.name, error=str(exc))
            finally:
                if polling is not None:
                    polling.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await polling
                if not connection.is_closed:
                    await connection.close()
            if lost:
                lost_at = time.monotonic() if consuming.started else lost_at
                nodes.lost()
                # Another node is usually up at once: retry soon, with jitter so
                # that a fleet of workers does not reconnect in one burst.
                await wait_any(shutdown.requested, seconds=_backoff(1))
    finally:
        if observer is not None:
            observer.stop()
        for hook in settings.worker.shutdown_hooks:
            await hook(resources)
        await inbox.close()
    return counters


async def _consume(
    connection: AbstractConnection,
    settings: WorkerSettings,
    rules: RetryRules,
    inbox: Inbox,
    counters: Counters,
    shutdown: Shutdown,
    consuming: _Consuming,
    observer: Observer | None = None,
) -> bool:
    """Consume on one connection; True if the connection was lost, False on a requested stop."""
    spec = settings.topology.worker(settings.name)
    queue = settings.topology.queues[spec.queue]
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    await _check_queues(connection, settings)
    channels = await open_channels(connection, prefetch=settings.prefetch)
    # A channel the broker closed (a precondition failure, say) is as good as a
    # lost connection: reconnect rather than sit on a dead consumer.
    for wrapper in channels.wrappers:
        wrapper.close_callbacks.add(lambda *_: lost.set())
    metrics = observer.metrics if observer is not None else None
    consumer = Consumer(
        worker=settings.worker,
        queue=spec.queue,
        channel=channels.consume,
        publisher=Publisher(
            channels.publish,
            app_id=f"fleet.{settings.name}",
            confirm_seconds=metrics.confirm_seconds if metrics is not None else None,
        ),
        rules=rules,
        publish_to=spec.publish_to,
        terminal=frozenset(spec.terminal),
        concurrency=settings.concurrency,
        ack_batch=min(64, max(1, settings.prefetch // 4)),
        inbox=inbox,
        counters=counters,
        crash_limit=spec.crash_limit,
        count_redeliveries=queue.type == "classic",
        metrics=metrics,
        tracing=trace_context.current(),
    )
    # Logged before the consume starts: the first deliveries may be handled
    # before basic_consume's reply is, and a line after them would mislead.
    log.info(
        "worker.consuming",
        worker=settings.name,
        queue=spec.queue,
        node=node_label(consuming.nodes.current),
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
    )
    # What setting up allocated (modules, topology, contracts, connections)
    # lives as long as the process: out of the collector's way, a full
    # collection walks only what the deliveries allocate (a shorter pause).
    gc.freeze()
    consume_ok = await channels.consume.basic_consume(spec.queue, consumer.on_message)
    consumer_tag = consume_ok.consumer_tag or ""
    consuming.began()
    await wait_any(shutdown.requested, lost)
    if lost.is_set() and not shutdown.requested.is_set():
        log.warning("broker.connection_lost", worker=settings.name, in_flight=consumer.in_flight)
        return True
    log.info("worker.draining", worker=settings.name, in_flight=consumer.in_flight)
    try:
        await channels.consume.basic_cancel(consumer_tag)
    except CONNECTION_ERRORS:
        return True
    drain = asyncio.ensure_future(consumer.drain(settings.drain_timeout))
    await wait_any(shutdown.forced, drain)
    finished = drain.done() and drain.result()
    log.info(
        "worker.stopped",
        worker=settings.name,
        drained=finished,
        requeued=consumer.in_flight,
        processed=counters.processed,
        dead_lettered=counters.parked,
        retried=counters.retried,
        duplicates=counters.duplicates,
    )
    return False


@dataclass
class _Consuming:
    """Marks the start of consuming on a connection, and logs how long a failover took."""

    worker: str
    nodes: NodeRing
    lost_at: float | None
    ready: asyncio.Event | None
    started: bool = False

    def began(self) -> None:
        self.started = True
        if self.lost_at is not None:
            log.info(
                "broker.failover",
                worker=self.worker,
                node=node_label(self.nodes.current),
                seconds=round(time.monotonic() - self.lost_at, 3),
            )
        if self.ready is not None:
            self.ready.set()


async def _check_queues(connection: AbstractConnection, settings: WorkerSettings) -> None:
    """Refuse to start against a broker the topology was not applied to."""
    spec = settings.topology.worker(settings.name)
    queue = settings.topology.queues[spec.queue]
    needed = [spec.queue, dead_letter_queue(spec.queue)]
    needed += [retry_queue(spec.queue, d) for d in queue.retry.delays]
    missing = await first_missing_queue(connection, needed)
    if missing is not None:
        raise QueueMissing(
            f"queue {missing!r} does not exist on this broker: run `fleet topology apply` first"
        )


def _backoff(failures: int) -> float:
    """Exponential with full jitter, capped: 0.5 s, 1 s, 2 s … 30 s."""
    return random.uniform(0.1, min(MAX_RECONNECT_DELAY, 0.5 * 2 ** (failures - 1)))
