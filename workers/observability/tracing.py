"""Recording spans with OpenTelemetry: imported only when tracing is on
(`context.configure`), so a worker without it never loads the SDK or the API."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, TracerProvider

from workers.observability.context import text
from workers.runtime.delivery import Delivery
from workers.runtime.hooks import DeliveryObserver
from workers.runtime.retry import Decision

log = structlog.get_logger("fleet.tracing")

INSTRUMENTATION = "fleet"


class Tracing:
    """Records spans through one tracer provider.

    Args:
        provider: the SDK's provider (tests pass one with an in-memory exporter).
    """

    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION)

    @contextmanager
    def consuming(
        self, headers: Mapping[str, Any], *, queue: str, worker: str, type_name: str | None,
        message_id: str | None, correlation_id: str | None,
    ) -> Iterator[Span]:  # fmt: skip
        """A CONSUMER span for one delivery, the child of the context in its headers."""
        parent = propagate.extract(headers, getter=_HEADERS)
        with self.tracer.start_as_current_span(
            f"{queue} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": message_id or "",
                "messaging.message.conversation_id": correlation_id or "",
                "fleet.worker": worker,
                "fleet.event_type": type_name or "",
            },
        ) as span:
            yield span

    @contextmanager
    def receiving(self, headers: Mapping[str, str], *, name: str) -> Iterator[Span]:
        """A SERVER span for an HTTP request, continuing its `traceparent`, if any."""
        parent = propagate.extract(headers)
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            yield span

    def outgoing(self) -> dict[str, str]:
        """The current span's context as AMQP headers for a message published now."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def failed(self, span: Span, description: str) -> None:
        """Mark a delivery's span as failed (retried or dead-lettered)."""
        span.set_status(StatusCode.ERROR, description)

    def observer(self, *, worker: str, queue: str) -> TracingObserver:
        """The hooks that give each delivery of `queue` a CONSUMER span."""
        return TracingObserver(self, worker=worker, queue=queue)


#: The span of the delivery the current task processes, and its context token.
_current: ContextVar[tuple[Span, object] | None] = ContextVar("fleet_span", default=None)


class TracingObserver(DeliveryObserver):
    """A CONSUMER span per delivery, the child of the context in its headers, current
    while the delivery is processed (so its follow-ons carry it), failed when the
    delivery goes to a retry tier or the dead-letter queue.

    aiormq runs each delivery in a task of its own, and each task has its own
    copy of the context: the span set current here is that delivery's alone.
    """

    def __init__(self, tracing: Tracing, *, worker: str, queue: str):
        self.tracing = tracing
        self.worker = worker
        self.queue = queue

    def on_received(self, delivery: Delivery, label: str | None) -> None:
        parent = propagate.extract(delivery.headers, getter=_HEADERS)
        span = self.tracing.tracer.start_span(
            f"{self.queue} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.queue,
                "messaging.message.id": delivery.message_id,
                "messaging.message.conversation_id": delivery.correlation_id,
                "fleet.worker": self.worker,
                "fleet.event_type": delivery.type_name or "",
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        _current.set((span, token))

    def on_finished(self, delivery: Delivery, decision: Decision | None) -> None:
        current = _current.get()
        if current is None:
            return
        span, token = current
        _current.set(None)
        if decision is not None:
            self.tracing.failed(span, type(decision).__name__)
        span.end()
        otel_context.detach(token)  # type: ignore[arg-type]


def setup(service_name: str, exporters: str, wanted: bool) -> Tracing | None:
    """Tracing through an SDK provider already installed, else (when `wanted`) a new
    one exporting to `exporters`; None when neither, or the SDK is missing."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return Tracing(provider)
    if not wanted:
        return None
    try:
        sdk = _sdk_provider(service_name, exporters or "otlp")
    except ImportError as error:
        log.warning(
            "tracing.unavailable",
            error=str(error),
            hint="install the exporter: pip install 'fleet[otlp]'",
        )
        return None
    trace.set_tracer_provider(sdk)
    log.info("tracing.on", service=service_name, exporters=exporters or "otlp")
    return Tracing(sdk)


def _sdk_provider(service_name: str, exporters: str) -> TracerProvider:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in exporters.split(","):
        exporter: SpanExporter
        if name.strip() == "console":
            exporter = ConsoleSpanExporter()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _AmqpHeaders(Getter[Mapping[str, Any]]):
    """Reads trace context from AMQP headers, whose strings may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [text(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_HEADERS = _AmqpHeaders()
