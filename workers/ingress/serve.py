"""Running the ingress: the broker link in the background, the HTTP server in front."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from workers.ingress.app import make_app
from workers.ingress.broker import BrokerLink
from workers.ingress.dedupe import PostgresRecentIds, SeenIds
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
) -> None:
    """Serve `routes` on host:port until a shutdown is requested.

    With `database_url`, caller-given ids are remembered in PostgreSQL, shared
    by every replica; otherwise in this process's memory.
    """
    seen: PostgresRecentIds | None = None
    if database_url is not None:
        seen = PostgresRecentIds(database_url)
        await seen.start()
        log.info("ingress.dedupe", store="postgresql")
    else:
        log.info("ingress.dedupe", store="memory", note="repeats are caught per process")
    try:
        await _serve(routes, url, host=host, port=port, shutdown=shutdown, seen=seen)
    finally:
        if seen is not None:
            await seen.close()


async def _serve(
    routes: dict[str, Route],
    url: str,
    *,
    host: str,
    port: int,
    shutdown: Shutdown,
    seen: SeenIds | None,
) -> None:
    app, link = assemble(routes, url, seen=seen)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("ingress.listening", host=host, port=port, routes=sorted(routes))
        await shutdown.requested.wait()
        log.info("ingress.stopping")
    finally:
        # Stop taking requests, let in-flight ones finish their confirms, then disconnect.
        await runner.cleanup()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


def assemble(
    routes: dict[str, Route],
    url: str,
    *,
    max_backoff: float = 5.0,
    seen: SeenIds | None = None,
) -> tuple[web.Application, BrokerLink]:
    """The application and its broker link (not yet running: see `BrokerLink.run`),
    with the answer queue of synchronous routes bound on every connect."""
    replies = ReplyListener(routes)
    link = BrokerLink(
        url, max_backoff=max_backoff, on_open=replies.attach if replies.needed else None
    )
    return make_app(routes, link, replies, seen), link
