"""The console's Prometheus section when Prometheus does not answer: a note, no error."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from workers.console import prometheus


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_an_unreachable_prometheus_yields_the_note() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with aiohttp.ClientSession() as session:
        view = await prometheus.read(session, url)
    assert view.error is not None
    assert view.queues == []
    assert view.alerts == []
    html = prometheus.render(view)
    assert 'id="prometheus-note"' in html
    assert f"Prometheus at {url} did not answer" in html
    assert "ClientConnectorError" in html


async def test_a_server_that_is_not_prometheus_yields_the_note() -> None:
    """A proxy's error page (HTTP 502, HTML) is a note too, not a crash of the overview."""

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", bad_gateway)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("/"))
        view = await prometheus.read(session, url)
    assert view.error is not None
    assert "HTTP 502" in view.error
    assert 'id="prometheus-note"' in prometheus.render(view)


async def test_a_prometheus_that_hangs_yields_the_note_within_the_timeout() -> None:
    """The overview waits for Prometheus on every refresh: a hung one costs the timeout."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        started = time.monotonic()
        view = await prometheus.read(session, str(server.make_url("/")), seconds=0.3)
        took = time.monotonic() - started
    assert view.error is not None
    assert "TimeoutError" in view.error
    assert took < 2
    assert 'id="prometheus-note"' in prometheus.render(view)
