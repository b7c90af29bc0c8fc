"""The overview's figures as Prometheus has them (`fleet console --prometheus-url`).

The broker's own figures (`workers.status`) say what the queues hold now;
Prometheus adds what only it knows: the processed rate over the last minute
from every replica's counters, and which alerts fire. Queries go to its HTTP
API with a short timeout; one that fails makes a note on the page, never an
error page, since the console must stay usable while Prometheus is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from topology.names import dead_letter_queue
from workers.console.html import e, table

#: Every replica of a worker reports the same queue: the max is the queue's figure.
READY = "max by (queue, kind) (fleet_queue_messages_ready)"
PROCESSED = "sum by (queue) (rate(fleet_messages_processed_total[1m]))"
#: Seconds a query may take: the overview waits for it on every refresh.
TIMEOUT = 2.0


class PrometheusError(Exception):
    """Prometheus did not answer, or answered something other than success."""


@dataclass(frozen=True)
class QueueFigures:
    """One work queue as Prometheus has it; None where it has no series."""

    queue: str
    ready: float | None
    dead_letters: float | None
    processed_per_second: float | None


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    summary: str
    labels: dict[str, str]


@dataclass(frozen=True)
class View:
    """What the overview shows from Prometheus; `error` set means it did not answer."""

    url: str
    queues: list[QueueFigures] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    error: str | None = None


async def read(session: aiohttp.ClientSession, url: str, *, seconds: float = TIMEOUT) -> View:
    """The work queues' figures and the firing alerts; a View with `error` on any failure."""
    base = url.rstrip("/")
    limit = aiohttp.ClientTimeout(total=seconds)
    # return_exceptions: every query ends (each has the timeout) before the first
    # failure is reported, so none is left running or unretrieved.
    answers = await asyncio.gather(
        _api(session, limit, f"{base}/api/v1/query", query=READY),
        _api(session, limit, f"{base}/api/v1/query", query=PROCESSED),
        _api(session, limit, f"{base}/api/v1/alerts"),
        return_exceptions=True,
    )
    try:
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        ready, processed, alerts = answers
        return View(url, _queues(ready, processed), _firing(alerts))
    except (PrometheusError, aiohttp.ClientError, TimeoutError, ValueError, KeyError) as error:
        return View(url, error=f"{type(error).__name__}: {error}".rstrip(": "))


async def _api(
    session: aiohttp.ClientSession, limit: aiohttp.ClientTimeout, url: str, **params: str
) -> Any:
    async with session.get(url, params=params, timeout=limit) as reply:
        if reply.status != 200:
            raise PrometheusError(f"HTTP {reply.status} from {url}")
        body = await reply.json(content_type=None)
    if not isinstance(body, dict) or body.get("status") != "success":
        raise PrometheusError(f"{url} answered {str(body)[:200]}")
    return body["data"]


def _vector(data: Any) -> dict[tuple[str, str], float]:
    """An instant vector as {(queue, kind): value}."""
    return {
        (r["metric"].get("queue", ""), r["metric"].get("kind", "")): float(r["value"][1])
        for r in data["result"]
    }


def _queues(ready_data: Any, processed_data: Any) -> list[QueueFigures]:
    ready = _vector(ready_data)
    processed = {queue: value for (queue, _), value in _vector(processed_data).items()}
    work = sorted({queue for queue, kind in ready if kind == "work"} | set(processed))
    return [
        QueueFigures(
            queue,
            ready.get((queue, "work")),
            ready.get((dead_letter_queue(queue), "dead")),
            processed.get(queue),
        )
        for queue in work
    ]


def _firing(data: Any) -> list[Alert]:
    alerts = []
    for alert in data["alerts"]:
        if alert.get("state") != "firing":
            continue
        labels: dict[str, str] = dict(alert["labels"])
        alerts.append(
            Alert(
                name=labels.pop("alertname", "?"),
                severity=labels.pop("severity", ""),
                summary=alert.get("annotations", {}).get("summary", ""),
                labels=labels,
            )
        )
    return sorted(alerts, key=lambda a: (a.name, sorted(a.labels.items())))


def render(view: View) -> str:
    """The overview's Prometheus section: a note when it did not answer."""
    out = [f'<h2 id="prometheus">From Prometheus <span class="note">{e(view.url)}</span></h2>']
    if view.error is not None:
        out.append(
            f'<p class="yellow" id="prometheus-note">Prometheus at {e(view.url)} did not '
            f"answer ({e(view.error)}); the figures above come from the broker alone.</p>"
        )
        return "".join(out)
    rows = [
        (
            e(q.queue),
            _number(q.ready),
            f'<span class="red">{_number(q.dead_letters)}</span>'
            if q.dead_letters
            else _number(q.dead_letters),
            "-" if q.processed_per_second is None else f"{q.processed_per_second:.2f}",
        )
        for q in view.queues
    ]
    headers = ("Queue", "Ready", "Dead letters", "Processed/s (1m)")
    out.append(table(headers, rows, numeric=(1, 2, 3), escaped=True))
    if view.alerts:
        items = "".join(
            f'<li class="{"red" if a.severity == "critical" else "yellow"}" '
            f'data-alert="{e(a.name)}"><b>{e(a.name)}</b> ({e(a.severity)}): {e(a.summary)}</li>'
            for a in view.alerts
        )
        out.append(f'<p>{len(view.alerts)} alert(s) firing:</p><ul id="alerts">{items}</ul>')
    else:
        out.append('<p class="green" id="alerts">No alert firing.</p>')
    return "".join(out)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
