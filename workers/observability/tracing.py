"""W3C trace context through HTTP and AMQP, so one saga is one trace.

The ingress starts a trace (or continues the caller's `traceparent`) and puts
`traceparent`/`tracestate` on the event's AMQP headers; each worker runs a
delivery inside a CONSUMER span that is the child of those headers, and its
follow-on events carry that span's context, so the next worker's span is its
child, and so on down the saga.

Whether spans are recorded is decided once per process (`configure`): when
an OpenTelemetry SDK is already set up, or the standard OTEL_* variables ask
for an exporter. Otherwise `current()` is None and the hot path pays one dict
lookup per follow-on: an incoming `traceparent` is copied onto follow-ons as
it is, so a traced producer upstream still sees its saga as one trace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, TracerProvider

from workers.runtime import headers as h

log = structlog.get_logger("fleet.tracing")

INSTRUMENTATION = "fleet"
_OFF = ("", "none")


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


def mark_failed(span: Span, description: str) -> None:
    """Mark a delivery's span as failed (retried or dead-lettered)."""
    span.set_status(StatusCode.ERROR, description)


def copied(headers: Mapping[str, Any]) -> dict[str, str] | None:
    """Tracing off: the incoming trace context, as it is, for the follow-ons (or None)."""
    parent = headers.get(h.TRACEPARENT)
    if parent is None:
        return None
    state = headers.get(h.TRACESTATE)
    if state is None:
        return {h.TRACEPARENT: _text(parent)}
    return {h.TRACEPARENT: _text(parent), h.TRACESTATE: _text(state)}


@contextmanager
def request_span(headers: Mapping[str, str], *, name: str) -> Iterator[None]:
    """Around an HTTP request to the ingress: a SERVER span continuing the caller's
    `traceparent` when tracing is on; nothing otherwise."""
    tracing = _current
    if tracing is None:
        yield
        return
    with tracing.receiving(headers, name=name):
        yield


def for_request(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The trace context for the event an HTTP request publishes: the request's
    span when tracing is on, else the caller's `traceparent` as it came."""
    tracing = _current
    return copied(headers) if tracing is None else tracing.outgoing()


_current: Tracing | None = None


def current() -> Tracing | None:
    """This process's tracing, or None when spans are not recorded."""
    return _current


def use(tracing: Tracing | None) -> None:
    """Set this process's tracing (tests; `configure` otherwise)."""
    global _current
    _current = tracing


def configure(service_name: str) -> Tracing | None:
    """Decide once, at start, whether this process records spans, and set it up.

    On when an SDK provider is already installed, or when OTEL_TRACES_EXPORTER
    (other than `none`) or an OTLP endpoint variable is set; off when
    OTEL_SDK_DISABLED is true. The exporter itself reads the standard OTEL_*
    variables (endpoint, headers, protocol timeouts).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        use(None)
        return None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        use(Tracing(provider))
        return _current
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporters in _OFF and not endpoint:
        use(None)
        return None
    try:
        sdk = _sdk_provider(service_name, exporters or "otlp")
    except ImportError as error:
        log.warning(
            "tracing.unavailable",
            error=str(error),
            hint="install the exporter: pip install 'fleet[otlp]'",
        )
        use(None)
        return None
    trace.set_tracer_provider(sdk)
    use(Tracing(sdk))
    log.info("tracing.on", service=service_name, exporters=exporters or "otlp")
    return _current


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
        return None if value is None else [_text(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_HEADERS = _AmqpHeaders()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
