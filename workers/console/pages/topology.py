"""Topology: the graph `fleet topology graph` prints, drawn, and what `fleet topology
plan` would change on the live broker. Read-only: nothing here applies anything."""

from __future__ import annotations

import asyncio

from aiohttp import web

from topology import TopologyError
from topology.apply import desired_resources, survey
from topology.graph import mermaid
from workers.console.app import console_of, html
from workers.console.diagrams import topology_svg
from workers.console.html import e
from workers.loader import load_workers

_COLOURS = {"create": "green", "change": "yellow", "drift": "red", "unmanaged": "grey",
            "remove": "red"}  # fmt: skip


def routes(app: web.Application) -> None:
    app.router.add_get("/topology", show)


async def show(request: web.Request) -> web.Response:
    console = console_of(request)
    wiring = await asyncio.to_thread(load_workers, console.topology)
    wired = {name: worker.wiring() for name, worker in wiring[0].items()}
    graph = mermaid(console.topology, wired)
    try:
        current, _ = await asyncio.to_thread(
            survey,
            desired_resources(console.topology, wired),
            console.settings.amqp_url,
            management_url=console.settings.management_url,
        )
        changes = "".join(
            f'<li class="{_COLOURS.get(c.kind, "")}">{e(c.render())}</li>' for c in current.changes
        )
        plan = f'<ul id="plan">{changes}</ul><p id="plan-summary">{e(current.summary())}</p>'
    except TopologyError as error:
        plan = f'<p class="red">Cannot plan: {e(error)}</p>'
    problems = "".join(f"<li class=yellow>{e(p)}</li>" for p in wiring[1])
    body = (
        "<p>exchange → (routing key) → queue → worker → emitted event → exchange. Retry and "
        "dead-letter queues are left out (every queue has them).</p>"
        + (f"<ul>{problems}</ul>" if problems else "")
        + f'<div class="diagram">{topology_svg(graph)}</div>'
        "<h2>Plan against the live broker</h2><p class=note>What <code>fleet topology plan"
        "</code> says; apply it with <code>fleet topology apply</code>.</p>"
        + plan
        + f"<details><summary>Mermaid source</summary><pre>{e(graph)}</pre></details>"
    )
    return html(request, "Topology", body)
