"""A worker whose queue is a stream: the same handlers, fed by the stream protocol.

    check the stream protocol and the streams (one line if the plugin is off)
    ─▶ on each AMQP connection (the reconnect loop every worker uses):
       take each stream's lock (`lock`: one replica per stream and consumer name)
       ─▶ subscribe after the stored offset (`positions`), or at `from`
       ─▶ each message through the handler stage (`consumer`)
       ─▶ store offsets every second; a stream another replica reads is tried again
    ─▶ on a stop: finish the message in hand, store offsets, close

A stream connection that closes ends the session and the loop reconnects, resuming
after the last offset done; a stream deleted under the worker stops it with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from aio_pika.abc import AbstractConnection
from rstream import Consumer, ConsumerOffsetSpecification, OnClosedErrorInfo
from rstream.constants import OffsetType

from topology.names import dead_letter_queue, failure_exchange, stream_worker_base
from topology.stream_start import StreamStart
from topology.streams import streams_of
from workers.errors import DatabaseRequired, WorkerError
from workers.loader import load_exception_classes
from workers.observability import context as trace_context
from workers.observability.metrics import MetricsObserver
from workers.runtime.connection import first_missing_exchange, first_missing_queue
from workers.runtime.handling import HandlerStage
from workers.runtime.hooks import DeliveryObserver, Observers
from workers.runtime.limits import Limits, unknown_handlers
from workers.runtime.nodes import NodeRing, node_label
from workers.runtime.observers import Counters, Counting, FailureLog
from workers.runtime.publisher import Publisher
from workers.runtime.reconnect import Connected, keep_connected
from workers.runtime.retry import RetryRules
from workers.runtime.service import QueueMissing, WorkerSettings
from workers.runtime.shutdown import Shutdown
from workers.runtime.waiting import wait_any
from workers.streams.connect import StreamEndpoint, StreamUnavailable
from workers.streams.consumer import StreamConsumer
from workers.streams.lock import StreamLocks
from workers.streams.positions import BrokerPositions, DatabasePositions, OffsetClaims, Positions
from workers.worker import Resources

if TYPE_CHECKING:
    import asyncpg

    from workers.observability.observer import Observer

log = structlog.get_logger("fleet.stream")

#: Seconds between stores of the offsets processed, and between tries of a stream
#: another replica reads.
STORE_EVERY = 1.0

#: Seconds to wait before reading again a message that could not be settled, so a
#: broker that keeps refusing its parked copy does not make the worker spin.
PARK_FAILURE_PAUSE = 1.0
#: Seconds a replica leaves the partitions beyond its share to replicas still starting.
SHARE_GRACE = 5.0

_KINDS = {
    "first": OffsetType.FIRST,
    "last": OffsetType.LAST,
    "next": OffsetType.NEXT,
    "offset": OffsetType.OFFSET,
    "timestamp": OffsetType.TIMESTAMP,
}


def offset_specification(start: StreamStart) -> ConsumerOffsetSpecification:
    """The topology's `from` as the stream protocol's offset specification."""
    resolved = start.resolved()
    return ConsumerOffsetSpecification(_KINDS[resolved.kind], resolved.value)


class _Run:
    """What a stream worker keeps across its connections."""

    def __init__(self, settings: WorkerSettings, pool: asyncpg.Pool | None):
        spec = settings.topology.worker(settings.name)
        queue = settings.topology.queues[spec.queue]
        self.settings = settings
        self.spec = spec
        self.name = settings.name
        self.consumer_name = spec.consumer or settings.name
        self.streams = streams_of(spec.queue, queue)
        self.base = stream_worker_base(spec.queue, settings.name)
        # No delay tiers: a stream cannot hand a message back later. In-process
        # attempts, then the dead-letter queue.
        self.rules = RetryRules(
            self.base,
            msgspec.structs.replace(queue.retry, delays=[]),
            load_exception_classes(settings.name, spec.permanent_errors),
            load_exception_classes(settings.name, spec.transient_errors, "transient_errors"),
        )
        self.endpoint = StreamEndpoint.from_amqp_url(settings.url, settings.stream_port)
        self.pool = pool
        self.claims = OffsetClaims(pool, self.consumer_name) if pool is not None else None
        self.counters = Counters()
        self.resume: dict[str, int] = {}
        self.observer: Observer | None = None


async def run_stream_worker(
    settings: WorkerSettings, shutdown: Shutdown, *, ready: asyncio.Event | None = None
) -> Counters:
    """Read the worker's stream until `shutdown` is requested; returns what was done.

    Raises:
        StreamUnavailable: the stream protocol cannot be reached (the plugin is off),
            a stream does not exist, or one was deleted while the worker read it.
        QueueMissing: the topology was not applied (no dead-letter queue).

    A message that can be neither processed nor parked stops the reading at its
    offset: the worker reconnects after a pause and tries it again.
    """
    spec = settings.topology.worker(settings.name)
    if settings.worker.needs_database and settings.database_url is None:
        raise DatabaseRequired(settings.name)
    handled = (h.event_type.__wire_name__ for h in settings.worker.handlers)
    unknown = unknown_handlers(settings.name, spec, handled)
    if unknown is not None:
        raise WorkerError(unknown)
    await _require_streams(settings)
    pool = await _pool(settings.database_url)
    run = _Run(settings, pool)
    try:
        if run.claims is not None:
            await run.claims.start()
        log.info(
            "worker.offsets",
            worker=run.name,
            consumer=run.consumer_name,
            streams=run.streams,
            store="fleet_stream_offsets, with each handler's transaction"
            if pool is not None
            else f"the broker, every {STORE_EVERY:g}s and at shutdown",
        )
        resources = Resources(settings.name, pool)
        for hook in settings.worker.startup_hooks:
            await hook(resources)
        run.observer = settings.make_observer()
        if run.observer is not None:
            run.observer.start()

        async def session(connection: AbstractConnection, connected: Connected) -> bool:
            return await _read(connection, connected, run, shutdown, ready)

        try:
            await keep_connected(
                NodeRing(settings.url),
                session,
                name=f"fleet worker {settings.name}",
                stop=shutdown.requested,
                fields={"worker": settings.name},
            )
        finally:
            if run.observer is not None:
                run.observer.stop()
            for hook in settings.worker.shutdown_hooks:
                await hook(resources)
    finally:
        if pool is not None:
            await pool.close()
    return run.counters


async def _require_streams(settings: WorkerSettings) -> None:
    """Fail fast, in one line, when the stream protocol or a stream is missing."""
    spec = settings.topology.worker(settings.name)
    endpoint = StreamEndpoint.from_amqp_url(settings.url, settings.stream_port)
    probe = endpoint.consumer(f"fleet worker {settings.name} (check)")
    await endpoint.start(probe)
    try:
        for stream in streams_of(spec.queue, settings.topology.queues[spec.queue]):
            await endpoint.require(probe, stream)
    finally:
        await probe.close()


async def _pool(dsn: str | None) -> asyncpg.Pool | None:
    if dsn is None:
        return None
    import asyncpg  # only workers with a database load the driver

    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3)
    return pool


async def _read(
    connection: AbstractConnection,
    connected: Connected,
    run: _Run,
    shutdown: Shutdown,
    ready: asyncio.Event | None,
) -> bool:
    """Read on one AMQP connection; True if a connection was lost, False on a stop."""
    settings, spec = run.settings, run.spec
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    await _check_targets(connection, run.base, spec.publish_to, spec.faults)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    # A channel the broker closed is as good as a lost connection: reconnect.
    channel.close_callbacks.add(lambda *_: lost.set())
    metrics = run.observer.metrics if run.observer is not None else None
    publisher = Publisher(
        await channel.get_underlay_channel(),
        app_id=f"fleet.{settings.name}",
        confirm_seconds=metrics.confirm_seconds if metrics is not None else None,
    )
    tracing = trace_context.current()
    watching: list[DeliveryObserver] = [Counting(run.counters), FailureLog(run.name, run.base)]
    if metrics is not None:
        watching.append(MetricsObserver(metrics))
    if tracing is not None:
        watching.append(tracing.observer(worker=settings.name, queue=spec.queue))
    observers = Observers(watching)
    stage = HandlerStage(
        worker=settings.worker,
        queue=spec.queue,
        rules=run.rules,
        publisher=publisher,
        publish_to=spec.publish_to,
        faults=spec.faults,
        terminal=frozenset(spec.terminal),
        inbox=run.claims,
        observers=observers,
        trace_headers=trace_context.copied if tracing is None else lambda _: tracing.outgoing(),
        limits=Limits.of(spec),
    )
    closed = asyncio.Event()
    why: list[str] = []

    def on_close(info: OnClosedErrorInfo) -> None:
        why.append(f"{info.reason} {list(info.streams or [])}")
        closed.set()

    reader = run.endpoint.consumer(f"fleet worker {settings.name}", on_close)
    await run.endpoint.start(reader)
    broker = BrokerPositions(reader, run.consumer_name)
    positions: Positions = (
        broker if run.pool is None else DatabasePositions(run.pool, run.consumer_name, broker)
    )

    def offsets_lost(stream: str, count: int) -> None:
        if metrics is not None:
            metrics.stream_offsets_lost[stream] = metrics.stream_offsets_lost.get(stream, 0) + count

    consumer = StreamConsumer(
        stage=stage,
        base=run.base,
        publisher=publisher,
        observers=observers,
        positions=positions,
        claims=run.claims,
        on_lost=offsets_lost,
        resume=run.resume,
        pace=stage.pace,
        on_done=(lambda s, o: metrics.stream_offsets.__setitem__(s, o)) if metrics else None,
    )
    locks = StreamLocks(connection, run.consumer_name)
    reading: set[str] = set()
    standby: set[str] = set()
    announced = False
    # A super stream's partitions are spread over the replicas: each takes its share
    # first, and the rest only when no other replica took them within SHARE_GRACE.
    fair = -(-len(run.streams) // max(1, spec.replicas))
    share_until = time.monotonic() + SHARE_GRACE
    connected.began()
    try:
        while True:
            for stream in run.streams:
                if stream in reading:
                    continue
                if len(reading) >= fair and time.monotonic() < share_until:
                    continue  # leave the other replicas their share while they start
                if await locks.take(stream):
                    await _subscribe(reader, consumer, positions, run, stream)
                    reading.add(stream)
                    standby.discard(stream)
                elif stream not in standby:
                    standby.add(stream)
                    log.info(
                        "stream.standby",
                        worker=run.name,
                        stream=stream,
                        consumer=run.consumer_name,
                        why="another replica reads it; this one takes over if it stops",
                    )
            if not announced:
                # The line every worker logs once in business (`fleet up`, tests wait for it).
                announced = True
                log.info(
                    "worker.consuming",
                    worker=run.name,
                    queue=spec.queue,
                    node=node_label(connected.nodes.current),
                    reading=sorted(reading),
                    standby=sorted(standby),
                )
            if ready is not None:
                ready.set()
            await wait_any(shutdown.requested, lost, closed, consumer.failed, seconds=STORE_EVERY)
            if shutdown.requested.is_set() or lost.is_set() or closed.is_set():
                break
            if consumer.failed.is_set():
                log.error("stream.stopped", worker=run.name, error=str(consumer.error))
                await wait_any(shutdown.requested, seconds=PARK_FAILURE_PAUSE)
                return True  # reconnect, and read again from the message that failed
            await positions.flush()
        if shutdown.requested.is_set():
            drain = asyncio.ensure_future(consumer.drain(settings.drain_timeout))
            await wait_any(shutdown.forced, drain)
            with contextlib.suppress(Exception):
                await positions.flush()
            log.info(
                "worker.stopped",
                worker=run.name,
                drained=drain.done() and drain.result(),
                processed=run.counters.processed,
                dead_lettered=run.counters.parked,
                skipped=consumer.skipped,
                offsets={s: run.resume[s] - 1 for s in sorted(run.resume)},
            )
            return False
        consumer.stopping = True
        if closed.is_set():
            gone = await _deleted(run.endpoint, run.streams)
            if gone is not None:
                raise StreamUnavailable(
                    f"stream {gone!r} was deleted while worker {run.name!r} read it "
                    "(`fleet topology apply` declares it again; the worker reads it "
                    "from `from` then)"
                )
            with contextlib.suppress(Exception):
                await positions.flush()
            log.warning("stream.connection_lost", worker=run.name, why="; ".join(why))
        else:  # its locks went with it: another replica may read now
            log.warning("broker.connection_lost", worker=run.name, reading=sorted(reading))
        return True
    finally:
        consumer.stopping = True
        with contextlib.suppress(Exception):
            # What was done stays done, however the session ends (a newer offset a
            # replica that took over stored may be overwritten: read again, not lost).
            await positions.flush()
        with contextlib.suppress(Exception):
            await reader.close()


async def _subscribe(
    reader: Consumer, consumer: StreamConsumer, positions: Positions, run: _Run, stream: str
) -> None:
    """Subscribe after the offset last done (stored, or done by this process), else at `from`."""
    stored = await positions.stored(stream)
    after = max(-1 if stored is None else stored, run.resume.get(stream, 0) - 1)
    if after >= 0:
        # From the last offset done, not the one after: reading it again proves the
        # stream still holds what follows (`StreamConsumer._check_gap`); it is skipped.
        start = ConsumerOffsetSpecification(OffsetType.OFFSET, after)
        consumer.expected[stream] = after
        run.resume[stream] = after + 1
        shown = f"offset {after + 1}"
    else:
        wanted = run.spec.start or StreamStart("next")
        start = offset_specification(wanted)
        if wanted.kind == "offset" and wanted.value:
            consumer.expected[stream] = wanted.value - 1
        shown = f"from {wanted}"
    await reader.subscribe(
        stream,
        consumer.on_message,  # no decoder: the consumer reads the bytes (`message`)
        offset_specification=start,
        subscriber_name=run.consumer_name,
    )
    log.info(
        "stream.consuming",
        worker=run.name,
        stream=stream,
        consumer=run.consumer_name,
        start=shown,
        stored=stored,
    )


async def _deleted(endpoint: StreamEndpoint, streams: list[str]) -> str | None:
    """The first of `streams` that no longer exists; None when all do (or the
    stream protocol cannot say: the reconnect will find out)."""
    probe = endpoint.consumer("fleet worker (check)")
    try:
        await endpoint.start(probe)
        for stream in streams:
            if not await probe.stream_exists(stream):
                return stream
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await probe.close()
    return None


async def _check_targets(connection: AbstractConnection, base: str, *exchanges: str | None) -> None:
    """Refuse to read before the topology gave the worker its dead-letter queue."""
    missing = await first_missing_queue(connection, [dead_letter_queue(base)])
    if missing is None:
        wanted = [failure_exchange(base), *(e for e in exchanges if e is not None)]
        missing = await first_missing_exchange(connection, wanted)
    if missing is not None:
        raise QueueMissing(
            f"{missing!r} does not exist on this broker: run `fleet topology apply` first"
        )
