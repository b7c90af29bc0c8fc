"""Running the ingress: the broker link in the background, the HTTP server in front."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from topology.model import IngressLimits
from workers.ingress.app import make_app
from workers.ingress.broker import BrokerLink
from workers.ingress.dedupe import PostgresRecentIds, SeenIds
from workers.ingress.guard import listen
from workers.ingress.intake import OutboxIntake
from workers.ingress.replies import ReplyListener
from workers.ingress.routes import Route
from workers.runtime.shutdown import Shutdown

log = structlog.get_logger("fleet.ingress")


async def serve(
    routes: dict[str, Route],
    url: str,
    *,
    host: str,
    port: int,
    shutdown: Shutdown,
    database_url: str | None = None,
    outbox_url: str | None = None,
    limits: IngressLimits | None = None,
) -> None:
    """Serve `routes` on host:port until a shutdown is requested.

    With `database_url`, request ids are remembered in PostgreSQL, shared by
    every replica; otherwise in this process's memory. Routes with `accept:
    outbox` record their events (and ids) in the outbox's database,
    `outbox_url`. `limits` bound how long each client may take and how many
    are served at once (default: the topology's defaults).
    """
    intake: OutboxIntake | None = None
    outboxed = [r.exchange for r in routes.values() if r.accept == "outbox"]
    if outboxed:
        if outbox_url is None:
            raise ValueError("routes with `accept: outbox` need the outbox's database URL")
        intake = OutboxIntake(outbox_url, outboxed)
        await intake.start()
        log.info(
            "ingress.outbox", routes=sorted(p for p, r in routes.items() if r.accept == "outbox")
        )
    seen: PostgresRecentIds | None = None
    if database_url is not None:
        seen = PostgresRecentIds(database_url)
        await seen.start()
        log.info("ingress.dedupe", store="postgresql")
    else:
        log.info("ingress.dedupe", store="memory", note="repeats are caught per process")
    try:
        await _serve(
            routes,
            url,
            host=host,
            port=port,
            shutdown=shutdown,
            seen=seen,
            intake=intake,
            limits=limits if limits is not None else IngressLimits(),
        )
    finally:
        if seen is not None:
            await seen.close()
        if intake is not None:
            await intake.close()


async def _serve(
    routes: dict[str, Route],
    url: str,
    *,
    host: str,
    port: int,
    shutdown: Shutdown,
    seen: SeenIds | None,
    intake: OutboxIntake | None,
    limits: IngressLimits,
) -> None:
    app, link = assemble(routes, url, seen=seen, intake=intake)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    try:
        async with listen(app, host, port, limits):
            log.info("ingress.listening", host=host, port=port, routes=sorted(routes))
            await shutdown.requested.wait()
            log.info("ingress.stopping")
        # Leaving `listen` stopped taking requests and let in-flight ones finish
        # their confirms; now disconnect.
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


def assemble(
    routes: dict[str, Route],
    url: str,
    *,
    max_backoff: float = 5.0,
    seen: SeenIds | None = None,
    intake: OutboxIntake | None = None,
) -> tuple[web.Application, BrokerLink]:
    """The application and its broker link (not yet running: see `BrokerLink.run`),
    with the answer queue of synchronous routes bound on every connect."""
    replies = ReplyListener(routes)
    link = BrokerLink(
        url, max_backoff=max_backoff, on_open=replies.attach if replies.needed else None
    )
    return make_app(routes, link, replies, seen, intake), link
