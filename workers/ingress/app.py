"""The aiohttp application: each route's POST becomes one confirmed event.

A request is checked in order (content type 415, size 413, credentials 401,
contract 400) and only then published; the answer is 202 only after the
broker confirmed the event without returning it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

import msgspec
import structlog
from aiohttp import web

from contracts import InvalidPayload, decode
from workers.errors import PublishFailed
from workers.ingress.auth import (
    Unauthorized,
    check_bearer,
    verify_github,
    verify_standard_webhooks,
)
from workers.ingress.broker import BrokerDown, BrokerLink
from workers.ingress.routes import Route
from workers.observability import context as tracing
from workers.runtime.outgoing import outgoing_event

log = structlog.get_logger("fleet.ingress")

JSON = "application/json"
#: AMQP short strings (message_id, correlation_id) hold at most 255 bytes.
MAX_ID_BYTES = 255
_CHUNK = 64 * 1024
T = TypeVar("T")

LINK: web.AppKey[BrokerLink] = web.AppKey("link", BrokerLink)
ROUTES: web.AppKey[dict[str, Route]] = web.AppKey("routes", dict)


def make_app(routes: dict[str, Route], link: BrokerLink) -> web.Application:
    """The ingress application: `routes`, `/healthz`, `/readyz`, JSON 404s."""
    app = web.Application()
    app[LINK] = link
    app[ROUTES] = routes
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


def error(status: int, message: str, **extra: str) -> web.Response:
    """A JSON error answer: ``{"error": message, ...extra}``."""
    return web.json_response({"error": message, **extra}, status=status)


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready only while the broker connection is up."""
    if request.app[LINK].ready:
        return web.json_response({"status": "ready"})
    return error(503, "the broker is unreachable")


async def dispatch(request: web.Request) -> web.Response:
    """Find the route for the path, then accept its event."""
    route = request.app[ROUTES].get(request.path)
    if route is None:
        return error(404, f"no route {request.path}")
    if request.method != "POST":
        return web.json_response(
            {"error": f"{request.method} is not allowed; POST JSON"},
            status=405,
            headers={"Allow": "POST"},
        )
    try:
        with tracing.request_span(request.headers, name=f"POST {route.path}"):
            return await accept(request, route)
    except _Refused as refused:
        return refused.response


class _Refused(Exception):
    def __init__(self, response: web.Response):
        self.response = response


async def accept(request: web.Request, route: Route) -> web.Response:
    """Check, decode, publish, and answer 202 once the broker confirmed."""
    if request.content_type != JSON:
        return error(415, f"expected Content-Type {JSON}, got {request.content_type}")
    if request.content_length is not None and request.content_length > route.max_body:
        return error(413, f"the body exceeds {route.max_body} bytes")
    if route.auth == "bearer":
        _authenticate(lambda: check_bearer(request.headers.get("Authorization"), route.secrets))
    body = await _read(request, route.max_body)
    delivery_id: str | None = None
    if route.auth == "standard-webhooks":
        delivery_id = _authenticate(
            lambda: verify_standard_webhooks(request.headers, body, route.secrets)
        )
    elif route.auth == "github":
        delivery_id = _authenticate(lambda: verify_github(request.headers, body, route.secrets))
    try:
        event = decode(route.event_type, body)
    except InvalidPayload as exc:
        return error(400, exc.detail, path=exc.path)
    message_id = request.headers.get("Idempotency-Key") or delivery_id or uuid.uuid4().hex
    correlation_id = request.headers.get("X-Correlation-Id") or message_id
    for name, value in (("Idempotency-Key", message_id), ("X-Correlation-Id", correlation_id)):
        if len(value.encode()) > MAX_ID_BYTES:
            return error(400, f"{name} is longer than {MAX_ID_BYTES} bytes")
    message = outgoing_event(
        event,
        exchange=route.exchange,
        message_id=message_id,
        correlation_id=correlation_id,
        app_id="fleet.ingress",
        trace=tracing.for_request(request.headers),
    )
    if message.routing_key != route.routing_key:
        message = msgspec.structs.replace(message, routing_key=route.routing_key)
    try:
        await request.app[LINK].publish(message)
    except PublishFailed as exc:
        log.warning("ingress.unroutable", path=route.path, message_id=message_id, error=str(exc))
        return error(502, f"the event was not accepted by the broker: {exc}")
    except BrokerDown as exc:
        log.warning("ingress.broker_down", path=route.path, message_id=message_id, error=str(exc))
        return error(503, str(exc))
    log.info("ingress.accepted", path=route.path, type=message.type, message_id=message_id)
    return web.json_response({"message_id": message_id}, status=202)


def _authenticate(check: Callable[[], T]) -> T:
    try:
        return check()
    except Unauthorized as exc:
        raise _Refused(error(401, str(exc))) from None


async def _read(request: web.Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it grows past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _Refused(error(413, f"the body exceeds {limit} bytes"))
        chunks.append(chunk)
    return b"".join(chunks)
