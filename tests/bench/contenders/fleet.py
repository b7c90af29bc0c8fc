"""fleet's real runtime: `run_worker` (or `run_stream_worker`) on uvloop, its
Publisher, or `fleet stream replay`.

Consumers load the bench topology, build WorkerSettings and run
`run_worker(settings, Shutdown())` through `workers.runtime.loop.run` (uvloop),
exactly as `fleet worker run` does. The handler's Probe requests the shutdown
when the expected count is reached; the measurement ends when the runtime logs
`worker.stopped`, i.e. after the consumer was cancelled, in-flight deliveries
finished and the last acks were sent.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from tests.bench import layout
from tests.bench.child import Signals
from tests.bench.contenders import fleet_workers
from tests.bench.contenders.fleet_api import event_sender, worker_settings
from tests.bench.payload import ORDER
from tests.bench.probe import Probe, now, peak_rss_kb
from tests.bench.protocol import Job, Outcome, phases
from workers.runtime.connection import publishing_channel
from workers.runtime.loop import run as run_on_fleet_loop
from workers.runtime.publisher import Publisher
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown

if TYPE_CHECKING:
    from topology import Topology

#: role → the worker of `layout.TOPOLOGY` that plays it.
WORKERS = layout.WORKERS


def run(job: Job, signals: Signals) -> Outcome:
    if job.role == "publish":
        signals.ready()
        return run_on_fleet_loop(_publish(job))
    if job.role == "replay":
        signals.ready()
        return run_on_fleet_loop(_replay(job))
    marks: dict[str, tuple[float, float]] = {}
    _watch_logs(marks)
    topology = layout.bench_topology()
    if job.role == "stream-drain":
        topology = _own_consumer(topology, WORKERS[job.role], f"bench-fleet-{job.tag}")
    settings = worker_settings(
        topology,
        WORKERS[job.role],
        job.url,
        database_url=job.database_url,
        metrics=bool(job.observe),
    )
    if job.observe == "traced":
        _record_spans()
    probe = Probe(
        job.expected,
        phases(job.rates, job.seconds) if job.rates else None,
        warmup=job.warmup_messages,
    )
    fleet_workers.PROBE = probe
    signals.ready()
    stream = job.role == "stream-drain"
    return run_on_fleet_loop(_consume(settings, probe, signals, marks, job.warmup, stream=stream))


async def _consume(
    settings: WorkerSettings,
    probe: Probe,
    signals: Signals,
    marks: dict[str, tuple[float, float]],
    warmup: float,
    *,
    stream: bool = False,
) -> Outcome:
    shutdown = Shutdown()
    probe.on_done = shutdown.request
    ready = asyncio.Event()
    if stream:  # what `fleet worker run` runs for a worker whose queue is a stream
        from workers.streams.service import run_stream_worker

        worker = asyncio.create_task(run_stream_worker(settings, shutdown, ready=ready))
    else:
        worker = asyncio.create_task(run_worker(settings, shutdown, ready=ready))
    consuming = asyncio.create_task(ready.wait())
    await asyncio.wait((worker, consuming), return_when=asyncio.FIRST_COMPLETED)
    if not consuming.done():
        consuming.cancel()
        await worker  # it ended before consuming: raise its error
    signals.consuming()
    counters = await worker
    end = marks.get("stopped") or now()
    outcome = probe.outcome(*end, warmup=warmup)
    outcome.extra = {
        "processed": counters.processed,
        "duplicates": counters.duplicates,
        "dead_lettered": counters.parked,
        "retried": counters.retried,
    }
    return outcome


async def _publish(job: Job) -> Outcome:
    """`job.expected` OrderPlaced events with `job.lanes` confirms awaited at once."""
    async with publishing_channel(job.url, name="fleet bench publisher") as channel:
        send = event_sender(Publisher(channel, app_id="fleet.bench"))
        indexes = iter(range(job.expected))

        async def lane() -> None:
            for i in indexes:  # shared: each lane takes the next index
                await send(ORDER, layout.ORDERS, f"{job.tag}-{i}")

        probe = Probe(job.expected)
        probe.tick()  # starts both clocks
        await asyncio.gather(*(lane() for _ in range(job.lanes)))
        end = now()
    probe.count = job.expected
    return probe.outcome(*end)


async def _replay(job: Job) -> Outcome:
    """What `fleet stream replay bench-stream --since 1d --into QUEUE` runs, timed whole:
    finding the window's ends, reading, publishing, the last confirm, closing."""
    from workers.streams.connect import StreamEndpoint
    from workers.streams.replay import replay

    started, cpu_started = time.perf_counter(), time.process_time()
    done = await replay(
        StreamEndpoint.from_amqp_url(job.url),
        job.url,
        layout.STREAM,
        job.queue,
        since_ms=int(time.time() * 1000) - 86_400_000,
    )
    return Outcome(
        count=done.replayed,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
        max_rss_kb=peak_rss_kb(),
    )


def _own_consumer(topology: Topology, worker: str, consumer: str) -> Topology:
    """The topology with `worker` reading under the name `consumer`: a name that has
    stored no offset, so the worker reads the stream from its `from` (first)."""
    spec = msgspec.structs.replace(topology.workers[worker], consumer=consumer)
    return msgspec.structs.replace(topology, workers={**topology.workers, worker: spec})


def _record_spans() -> None:
    """Tracing on, as an OTLP exporter would have it, minus the network: the SDK
    makes a span per delivery and batches them to an exporter that drops them."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from workers.observability import context
    from workers.observability.tracing import Tracing

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    context.use(Tracing(provider))


def _watch_logs(marks: dict[str, tuple[float, float]]) -> None:
    """Note when the runtime logs `worker.stopped`; print warnings and errors to stderr.

    fleet logs only at start, stop and on failures, so this costs nothing per message.
    """

    def watch(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        if event.get("event") == "worker.stopped":
            marks["stopped"] = now()
        if method in ("warning", "error", "critical", "exception"):
            print(f"fleet {method}: {dict(event)}", file=sys.stderr)
        raise structlog.DropEvent

    structlog.configure(
        processors=[watch],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
