"""Audit log: every action taken from the console, newest first. Nothing here edits it."""

from __future__ import annotations

import json

from aiohttp import web

from workers.console.app import console_of, html
from workers.console.html import e, table, when


def routes(app: web.Application) -> None:
    app.router.add_get("/audit", show)


async def show(request: web.Request) -> web.Response:
    console = console_of(request)
    entries = await console.audit.recent(500)
    rows = [
        (
            when(x.at),
            x.who,
            x.role,
            x.action,
            x.queue,
            str(x.count),
            json.dumps(x.detail, default=str)[:300],
        )
        for x in entries
    ]
    body = f"<p class=note>Append-only, kept in the {e(console.audit.where)}.</p>" + table(
        ("When", "Who", "Role", "Action", "Queue", "How many", "Detail"), rows, numeric=(5,)
    )
    return html(request, "Audit log", body)
