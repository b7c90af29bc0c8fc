"""One saga is one trace: W3C trace context from the HTTP ingress through every
consume and follow-on publish, with spans parented step by step.

The ingress and three workers run in the test's process, recording into the
OpenTelemetry SDK's in-memory exporter; the broker is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import fulfilment.contracts  # noqa: F401  (registers the events)
import httpx
import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher, order
from topology import Topology, loads
from topology.apply import apply
from workers.ingress.app import make_app
from workers.ingress.broker import BrokerLink
from workers.ingress.routes import resolve_routes
from workers.observability import context as tracing
from workers.observability.tracing import Tracing
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown
from workers.testing import WorkerProcess, collect

CHAIN = """
exchanges:
  orders: {}
  inventory: {}
  payments: {}
queues:
  reserve:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
  charge:
    type: classic
    bind: [{exchange: inventory, routing_key: stock.reserved}]
  ship:
    type: classic
    bind: [{exchange: payments, routing_key: payment.captured}]
workers:
  reserve: {module: tests.fixtures.observed_workers, queue: reserve, publish_to: inventory}
  charge: {module: tests.fixtures.observed_workers, queue: charge, publish_to: payments}
  ship: {module: tests.fixtures.observed_workers, queue: ship}
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this process, into an in-memory exporter; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(Tracing(provider))
    yield exporter
    tracing.use(None)
    provider.shutdown()


@pytest.fixture
async def chain(broker: Broker) -> AsyncIterator[Topology]:
    """The three workers consuming in this process, until the test ends."""
    topology = loads(CHAIN)
    await apply(topology, broker.amqp_url, management_url=broker.management_url)
    shutdown = Shutdown()
    readies = {name: asyncio.Event() for name in topology.workers}
    tasks = [
        asyncio.create_task(
            run_worker(
                WorkerSettings.from_topology(topology, name, broker.amqp_url),
                shutdown,
                ready=readies[name],
            )
        )
        for name in topology.workers
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies.values())), 30)
    yield topology
    shutdown.request()
    await asyncio.gather(*tasks)


async def finished(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The exported spans once one named `name` is among them (or after 30 s)."""
    for _ in range(150):
        spans = list(exporter.get_finished_spans())
        if any(span.name == name for span in spans):
            return spans
        await asyncio.sleep(0.2)
    return list(exporter.get_finished_spans())


class TestOneSagaIsOneTrace:
    async def test_ingress_and_three_workers_make_one_trace_parented_step_by_step(
        self, broker: Broker, spans: InMemorySpanExporter, chain: Topology
    ) -> None:
        """The caller's trace is continued by the ingress, and each worker's span is
        the child of the span that published the event it handles."""
        # Given the ingress in front of the chain
        link = BrokerLink(broker.amqp_url, max_backoff=0.2)
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        server = TestServer(make_app(resolve_routes(chain, default_registry, {}), link))
        await server.start_server()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            async with httpx.AsyncClient(base_url=str(server.make_url(""))) as http:
                # When a caller with a trace of its own posts an order
                response = await http.post(
                    "/orders", json=order("o-1"), headers={"traceparent": TRACEPARENT}
                )
            assert response.status_code == 202, response.text
            exported = await finished(spans, "ship process")
        finally:
            await server.close()
            stop.set()
            await keeper

        # Then every span is in the caller's trace, each the child of the step before
        named = {span.name: span for span in exported}
        assert set(named) == {"POST /orders", "reserve process", "charge process", "ship process"}
        assert {format(span.context.trace_id, "032x") for span in exported} == {CALLER_TRACE}
        post, reserve, charge, ship = (
            named[n] for n in ("POST /orders", "reserve process", "charge process", "ship process")
        )
        assert post.kind is SpanKind.SERVER
        assert post.parent is not None
        assert format(post.parent.span_id, "016x") == CALLER_SPAN
        for child, parent in ((reserve, post), (charge, reserve), (ship, charge)):
            assert child.kind is SpanKind.CONSUMER
            assert child.parent is not None
            assert child.parent.span_id == parent.context.span_id, child.name
        assert reserve.attributes is not None
        assert reserve.attributes["fleet.worker"] == "reserve"
        assert reserve.attributes["messaging.destination.name"] == "reserve"

    async def test_a_failed_delivery_marks_its_span_as_an_error(
        self, broker: Broker, spans: InMemorySpanExporter, chain: Topology
    ) -> None:
        """A message that cannot be decoded is parked, and its span says so."""
        publisher = PikaPublisher(broker.amqp_url)
        try:
            publisher.publish(
                "orders", "order.placed", b"{broken", headers={"traceparent": TRACEPARENT}
            )
        finally:
            publisher.close()
        exported = await finished(spans, "reserve process")
        [span] = [s for s in exported if s.name == "reserve process"]
        assert not span.status.is_ok
        assert span.status.description == "Park"
        assert format(span.context.trace_id, "032x") == CALLER_TRACE


class TestTracingOff:
    async def test_follow_ons_carry_the_incoming_trace_context_unchanged(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """Without an exporter no span is made, yet the saga's trace context travels on."""
        path, _ = await echo_topology()
        with WorkerProcess("echo", topology_file=path, url=broker.amqp_url):
            pika_publisher.publish(
                "orders",
                "order.placed",
                order("o-1"),
                headers={"version": 1, "traceparent": TRACEPARENT, "tracestate": "vendor=x"},
            )
            [answer] = await collect(broker.amqp_url, "answers", count=1)
        assert answer.headers["traceparent"] == TRACEPARENT
        assert answer.headers["tracestate"] == "vendor=x"
        assert isinstance(answer.headers["timestamp_in_ms"], int)


class TestConfiguration:
    async def test_an_exporter_named_in_the_environment_turns_tracing_on(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher
    ) -> None:
        """OTEL_TRACES_EXPORTER makes a worker process record spans; it still works."""
        path, _ = await echo_topology()
        env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "echo-test"}
        with WorkerProcess("echo", topology_file=path, url=broker.amqp_url, env=env) as worker:
            pika_publisher.publish("orders", "order.placed", order("o-1"))
            answers = await collect(broker.amqp_url, "answers", count=1)
        assert len(answers) == 1
        [on] = worker.events("tracing.on")
        assert on["exporters"] == "console"
        # Traced, the follow-on carries the worker's own span as its parent.
        assert answers[0].headers["traceparent"].startswith("00-")

    def test_without_exporter_variables_tracing_stays_off(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No OTEL_* exporter, or OTEL_SDK_DISABLED: no spans, the copy-only path."""
        for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        assert tracing.configure("fleet.test") is None
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        assert tracing.configure("fleet.test") is None
        assert tracing.current() is None
