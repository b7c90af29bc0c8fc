"""Running the ingress: the broker link in the background, the HTTP server in front."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiohttp import web

from workers.ingress.app import make_app
from workers.ingress.broker import BrokerLink
from workers.ingress.routes import Route
from workers.runtime.shutdown import Shutdown

log = structlog.get_logger("fleet.ingress")


async def serve(
    routes: dict[str, Route], url: str, *, host: str, port: int, shutdown: Shutdown
) -> None:
    """Serve `routes` on host:port until a shutdown is requested."""
    link = BrokerLink(url)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    runner = web.AppRunner(make_app(routes, link), access_log=None)
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
