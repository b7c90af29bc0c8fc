"""One worker process: connect, check the queues exist, consume until told to
stop, and reconnect whenever the broker goes away."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from aio_pika.abc import AbstractConnection

from topology import Topology
from topology.model import WorkerSpec
from topology.names import dead_letter_queue, failure_exchange, retry_queue
from workers.errors import DatabaseRequired, WorkerError
from workers.loader import load_exception_classes, load_worker
from workers.observability import context as trace_context
from workers.observability.metrics import MetricsObserver
from workers.runtime.batching import batch_problems
from workers.runtime.breaker import Breaker, circuit_of
from workers.runtime.connection import (
    CONNECTION_ERRORS,
    first_missing_exchange,
    first_missing_queue,
    open_channels,
)
from workers.runtime.consumer import Consumer
from workers.runtime.handling import HandlerStage
from workers.runtime.hooks import DeliveryObserver, Observers
from workers.runtime.inbox import Inbox, MemoryInbox, PostgresInbox
from workers.runtime.limits import Limits, unknown_handlers
from workers.runtime.nodes import NodeRing, node_label
from workers.runtime.observers import Counters, Counting, FailureLog, Timeline
from workers.runtime.ordering import KeyLines, order_problem, unkeyed_contracts
from workers.runtime.publisher import Publisher
from workers.runtime.reconnect import Connected, keep_connected
from workers.runtime.retry import RetryRules
from workers.runtime.shutdown import Shutdown
from workers.runtime.waiting import wait_any
from workers.worker import Resources, Worker

if TYPE_CHECKING:
    from workers.observability.observer import Observer

log = structlog.get_logger("fleet.worker")

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
    # Workers on a stream: the stream protocol's port (workers.streams.connect.STREAM_PORT).
    stream_port: int = 5552

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
        stream_port: int = 5552,
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
            stream_port=stream_port,
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
        spec = self.topology.worker(self.name)
        if self.database_url is None:
            return MemoryInbox(capacity=spec.memory_inbox)
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
    """A queue or exchange the worker needs has not been provisioned."""


async def run_worker(
    settings: WorkerSettings, shutdown: Shutdown, *, ready: asyncio.Event | None = None
) -> Counters:
    """Consume until `shutdown` is requested; returns what was done.

    Raises:
        QueueMissing: the topology was not applied to this broker.
        BrokerRefused: the broker refused the login or the TLS handshake.
    """
    spec = settings.topology.worker(settings.name)
    queue = settings.topology.queues[spec.queue]
    if settings.worker.needs_database and settings.database_url is None:
        raise DatabaseRequired(settings.name)
    handled = (h.event_type.__wire_name__ for h in settings.worker.handlers)
    unknown = unknown_handlers(settings.name, spec, handled)
    if unknown is not None:
        raise WorkerError(unknown)
    for problem in batch_problems(settings.name, spec, settings.worker, settings.prefetch):
        raise WorkerError(str(problem))
    _check_order(settings.name, spec, settings.worker)
    rules = RetryRules(
        spec.queue,
        queue.retry,
        load_exception_classes(settings.name, spec.permanent_errors),
        load_exception_classes(settings.name, spec.transient_errors, "transient_errors"),
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
        # Which deliveries share an inbox transaction (docs/operations/failures.md: group commit).
        commit_batch=getattr(inbox, "commit_batch", None),
    )
    resources = Resources(settings.name, getattr(inbox, "pool", None))
    for hook in settings.worker.startup_hooks:
        await hook(resources)
    observer = settings.make_observer()
    if observer is not None:
        observer.start()

    async def session(connection: AbstractConnection, connected: Connected) -> bool:
        polling = observer.polling(connection) if observer is not None else None
        try:
            return await _consume(
                connection, settings, rules, inbox, counters, shutdown, connected, ready, observer
            )
        finally:
            if polling is not None:
                polling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polling

    try:
        await keep_connected(
            NodeRing(settings.url),
            session,
            name=f"fleet worker {settings.name}",
            stop=shutdown.requested,
            fields={"worker": settings.name},
        )
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
    connected: Connected,
    ready: asyncio.Event | None,
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
    publisher = Publisher(
        channels.publish,
        app_id=f"fleet.{settings.name}",
        confirm_seconds=metrics.confirm_seconds if metrics is not None else None,
    )
    tracing = trace_context.current()
    watching: list[DeliveryObserver] = [
        Counting(counters),
        FailureLog(settings.name, spec.queue),
        Timeline(settings.name, inbox),
    ]
    if metrics is not None:
        watching.append(MetricsObserver(metrics))
    if tracing is not None:
        watching.append(tracing.observer(worker=settings.name, queue=spec.queue))
    breaker = None
    if spec.breaker is not None:  # made per connection, closed again after a reconnect
        circuit = circuit_of(spec.breaker)
        breaker = Breaker(circuit, worker=settings.name, queue=spec.queue, channel=channels.consume)
        watching.append(breaker)
    observers = Observers(watching)
    # Made per connection: after a reconnect the buckets start full again.
    limits = Limits.of(spec)
    stage = HandlerStage(
        worker=settings.worker,
        queue=spec.queue,
        rules=rules,
        publisher=publisher,
        publish_to=spec.publish_to,
        faults=spec.faults,
        terminal=frozenset(spec.terminal),
        inbox=inbox,
        observers=observers,
        # Tracing off: an incoming trace context goes onto follow-ons as it came.
        trace_headers=trace_context.copied if tracing is None else lambda _: tracing.outgoing(),
        limits=limits,
    )
    consumer = Consumer(
        stage=stage,
        queue=spec.queue,
        channel=channels.consume,
        publisher=publisher,
        observers=observers,
        concurrency=settings.concurrency,
        ack_batch=min(64, max(1, settings.prefetch // 4)),
        inbox=inbox,
        crash_limit=spec.crash_limit,
        count_redeliveries=queue.type == "classic",
        pace=stage.pace,
        order=KeyLines.of(spec),
    )
    if metrics is not None:
        metrics.in_flight = lambda: consumer.in_flight
        metrics.breaker = breaker.circuit if breaker is not None else None
    # Logged before the consume starts: the first deliveries may be handled
    # before basic_consume's reply is, and a line after them would mislead.
    log.info(
        "worker.consuming",
        worker=settings.name,
        queue=spec.queue,
        node=node_label(connected.nodes.current),
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
    )
    # What setting up allocated (modules, topology, contracts, connections)
    # lives as long as the process: out of the collector's way, a full
    # collection walks only what the deliveries allocate (a shorter pause).
    gc.freeze()
    if breaker is None:
        consume_ok = await channels.consume.basic_consume(spec.queue, consumer.on_message)
        consumer_tag = consume_ok.consumer_tag or ""
    else:
        consumer_tag = await breaker.start(consumer.on_message)
    connected.began()
    if ready is not None:
        ready.set()
    await wait_any(shutdown.requested, lost)
    if lost.is_set() and not shutdown.requested.is_set():
        if breaker is not None:
            breaker.abandon()
        log.warning("broker.connection_lost", worker=settings.name, in_flight=consumer.in_flight)
        return True
    log.info("worker.draining", worker=settings.name, in_flight=consumer.in_flight)
    try:
        if breaker is None:
            await channels.consume.basic_cancel(consumer_tag)
        else:
            await breaker.stop()
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
        throttled=counters.throttled,
    )
    return False


def _check_order(name: str, spec: WorkerSpec, worker: Worker) -> None:
    """Refuse an `order_by` the handlers cannot honour; name the contracts it leaves unordered."""
    problem = order_problem(name, spec, worker)
    if problem is not None:
        raise WorkerError(str(problem))
    unkeyed = unkeyed_contracts(spec, worker)
    if unkeyed:
        log.warning("worker.unordered", worker=name, order_by=spec.order_by, contracts=unkeyed)


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
    # Failure copies go through the failure exchange; a topology applied before
    # fleet derived it lacks it.
    exchanges = [failure_exchange(spec.queue)]
    exchanges += [name for name in (spec.publish_to, spec.faults) if name is not None]
    missing = await first_missing_exchange(connection, exchanges)
    if missing is not None:
        raise QueueMissing(
            f"exchange {missing!r} does not exist on this broker: run `fleet topology apply` first"
        )
