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
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from workers.runtime import headers as h

if TYPE_CHECKING:
    from workers.observability.tracing import Tracing

_OFF = ("", "none")
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

    On when an OpenTelemetry SDK is already installed, or when
    OTEL_TRACES_EXPORTER (other than `none`) or an OTLP endpoint variable is
    set; off when OTEL_SDK_DISABLED is true. The exporter itself reads the
    standard OTEL_* variables (endpoint, headers, timeouts). Off, OpenTelemetry
    is not even imported.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        use(None)
        return None
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    wanted = exporters not in _OFF or bool(endpoint)
    # Nothing can have installed an SDK in a process that never imported the API.
    if not wanted and "opentelemetry.trace" not in sys.modules:
        use(None)
        return None
    from workers.observability.tracing import setup

    use(setup(service_name, "" if exporters in _OFF else exporters, wanted))
    return _current


def copied(headers: Mapping[str, Any]) -> dict[str, str] | None:
    """Tracing off: the incoming trace context, as it is, for the follow-ons (or None)."""
    parent = headers.get(h.TRACEPARENT)
    if parent is None:
        return None
    state = headers.get(h.TRACESTATE)
    if state is None:
        return {h.TRACEPARENT: text(parent)}
    return {h.TRACEPARENT: text(parent), h.TRACESTATE: text(state)}


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


def text(value: Any) -> str:
    """A header value as text (AMQP long strings may arrive as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
