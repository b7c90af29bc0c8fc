"""Sagas: recent ones with status and duration (`fleet saga list`), and one saga's
timeline as a sequence diagram beside the tree `fleet saga show` prints."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from topology import Duration
from workers import saga as timeline
from workers.console.app import console_of, html
from workers.console.diagrams import saga_svg
from workers.console.html import e, table, when

_COLOURS = {"processed": "green", "retried": "yellow", "dead-lettered": "red"}


def routes(app: web.Application) -> None:
    app.router.add_get("/sagas", sagas)
    app.router.add_get("/sagas/{saga_id}", show)


def _no_database(request: web.Request, title: str) -> web.Response:
    return html(
        request, title,
        '<p class="yellow">No database: start the console with --database-url (or '
        "FLEET_DATABASE_URL) to see the sagas the workers record.</p>",
    )  # fmt: skip


async def sagas(request: web.Request) -> web.Response:
    console = console_of(request)
    if console.pool is None:
        return _no_database(request, "Sagas")
    since = request.query.get("since", "1h")
    status = request.query.get("status") or None
    try:
        window = Duration.parse(since).timedelta
    except ValueError:
        window, since = timedelta(hours=1), "1h"
    try:
        async with console.pool.acquire() as db:
            rows = await timeline.sagas(
                db, declared=console.topology.sagas, since=window, status=status, limit=100
            )
    except timeline.NoTimeline:
        return html(request, "Sagas", "<p>No saga timeline yet (no worker recorded one).</p>")
    except LookupError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    cells = [
        (
            when(r.started),
            f'<a href="/sagas/{e(r.correlation_id)}">{e(r.correlation_id)}</a>',
            e(r.saga or "-"),
            e((r.status or "-") + (f" ({r.ending})" if r.ending else "")),
            str(r.events),
            str(r.retried),
            str(r.dead_lettered),
            f"{round(r.duration_ms)} ms" + ("" if r.ended else " so far"),
        )
        for r in rows
    ]
    form = (
        '<form method="get"><label>Since <input name="since" value="'
        f'{e(since)}" size=5></label> <label>Status <input name="status" value="'
        f'{e(status or "")}" size=10></label> <button>Show</button></form>'
    )
    body = form + table(
        ("Started", "Saga", "Kind", "Status", "Events", "Retried", "Dead", "Duration"),
        cells, numeric=(4, 5, 6, 7), escaped=True,
        classes=["dead" if r.dead_lettered else "" for r in rows],
    )  # fmt: skip
    return html(request, f"Sagas (last {since})", body)


async def show(request: web.Request) -> web.Response:
    console = console_of(request)
    if console.pool is None:
        return _no_database(request, "Saga")
    saga_id = request.match_info["saga_id"]
    try:
        async with console.pool.acquire() as db:
            correlation_id = await timeline.resolve(db, saga_id)
            steps = await timeline.timeline(db, correlation_id) if correlation_id else []
    except timeline.NoTimeline:
        raise web.HTTPNotFound(text="no saga timeline in this database") from None
    if not steps:
        raise web.HTTPNotFound(text=f"no saga {saga_id!r} in the timeline")
    span = round((steps[-1].at - steps[0].at).total_seconds() * 1000)
    tree = "\n".join(
        f'<span class="{_COLOURS.get(outcome or "", "")}">{e(line)}</span>'
        for line, outcome in timeline.render(steps)
    )
    body = (
        f"<p>{len(steps)} event(s) over {span} ms, from {e(when(steps[0].at))}. "
        "Lanes are workers; each arrow is an event, from the worker that emitted it to the one "
        'that handled it: <span class="yellow">↻ dashed: retried</span>, '
        '<span class="red">✕ dead-lettered</span>.</p>'
        f'<div class="diagram">{saga_svg(steps)}</div>'
        "<h2>Causation tree</h2><p class=note>As <code>fleet saga show</code> prints it.</p>"
        f'<pre id="tree">{tree}</pre>'
    )
    return html(request, f"Saga {correlation_id}", body)
