"""Overview: every queue of the topology, as `fleet status` reads it, refreshed live.

The table comes from `workers.status.snapshot`, the function behind `fleet
status`; the page polls /overview/table every few seconds for a new one. With
`--prometheus-url`, a second section shows Prometheus's figures and firing
alerts (`workers.console.prometheus`), read alongside the broker's.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from workers.console import prometheus
from workers.console.app import Console, console_of, html
from workers.console.html import e, table
from workers.status import Depth, QueueStatus, Snapshot, snapshot

SCRIPT = """
const every = %d * 1000;
async function refresh() {
  try {
    const r = await fetch('/overview/table', {credentials: 'same-origin'});
    if (r.ok) document.getElementById('live').innerHTML = await r.text();
  } catch (e) {}
  setTimeout(refresh, every);
}
setTimeout(refresh, every);
"""


def routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_get("/overview/table", fragment)


async def read(request: web.Request) -> str:
    """The live part of the page: the broker's tables, then Prometheus's if configured."""
    console = console_of(request)
    connection, management, _ = console.ready
    url, http = console.settings.prometheus_url, console.http
    if url is None or http is None:
        return render(await snapshot(console.topology, connection, management), console)
    shot, view = await asyncio.gather(
        snapshot(console.topology, connection, management), prometheus.read(http, url)
    )
    return render(shot, console) + prometheus.render(view)


async def overview(request: web.Request) -> web.Response:
    console = console_of(request)
    body = f'<div id="live">{await read(request)}</div>'
    body += (
        f'<p class="note">Refreshed every {console.settings.refresh_seconds:g}s. Ready and '
        "consumer counts are exact; unacked counts and rates come from the management API "
        "and trail by its statistics interval. The same figures as <code>fleet status</code>.</p>"
    )
    script = SCRIPT % console.settings.refresh_seconds
    return html(request, "Overview", body, script=script)


async def fragment(request: web.Request) -> web.Response:
    text = await read(request)
    return web.Response(text=text, content_type="text/html")


def render(shot: Snapshot, console: Console) -> str:
    """The queue table, the totals line and the workers table."""
    rows = [_cells(row) for row in shot.rows]
    classes = ["dead" if r.dead_letters else "missing" if r.missing else "" for r in shot.rows]
    out = [
        table(
            (
                "Queue",
                "Kind",
                "Ready",
                "Unacked",
                "Consumers",
                "In/s",
                "Out/s",
                "Retry tiers",
                "Dead letters",
            ),
            rows,
            numeric=(2, 3, 4, 5, 6, 8),
            classes=classes,
            escaped=True,
        )
    ]
    waiting = sum(d.ready for row in shot.rows for _, d in row.retries)
    state = "red" if shot.dead_letters else "green"
    out.append(
        f'<p class="{state}" id="totals"><b>{shot.dead_letters}</b> dead-lettered, '
        f"<b>{waiting}</b> waiting for a retry.</p>"
    )
    if shot.missing:
        out.append(
            f'<p class="yellow">{len(shot.missing)} managed queue(s) not on the broker: run '
            "<code>fleet topology apply</code>.</p>"
        )
    consumers = {row.queue.name: row.queue.consumers for row in shot.rows}
    workers = [
        (
            e(name),
            e(spec.queue),
            str(spec.replicas),
            str(consumers.get(spec.queue, 0)),
            str(spec.concurrency),
        )
        for name, spec in console.topology.workers.items()
    ]
    out.append("<h2>Workers</h2>")
    out.append(
        table(
            ("Worker", "Queue", "Replicas", "Consumers now", "Concurrency"),
            workers,
            numeric=(2, 3, 4),
            escaped=True,
        )
    )
    return "".join(out)


def _cells(row: QueueStatus) -> list[str]:
    q = row.queue
    counts = (
        ["-"] * 5
        if q.missing
        else [
            str(q.ready),
            str(q.unacked),
            str(q.consumers),
            f"{q.rate_in:.1f}",
            f"{q.rate_out:.1f}",
        ]
    )
    tiers = " ".join(f"{e(label)}:{_count(d)}" for label, d in row.retries) or "-"
    if row.dead is None:
        dead = "-"
    elif row.dead_letters:
        dead = (
            f'<a class="red" data-dead="{e(q.name)}" href="/failures?queue={e(row.dead.name)}">'
            f"{row.dead_letters}</a>"
        )
    else:
        dead = f'<span data-dead="{e(q.name)}">{_count(row.dead)}</span>'
    return [e(q.name), e(row.kind), *counts, tiers, dead]


def _count(depth: Depth) -> str:
    return "missing" if depth.missing else str(depth.ready + depth.unacked)
