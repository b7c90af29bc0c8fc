"""The aiohttp application: each route's POST becomes one confirmed event.

A request is checked in order (caller address 403, content type 415, size 413,
credentials 401, contract 400, id reuse 409/422) and only then published; the
answer is 202 only after the broker confirmed the event without returning it,
or, on a route with `accept: outbox`, once the event's row committed in the
outbox's database (`workers.ingress.intake`), for the relay to publish.
A synchronous route then waits for the answering event (200) or gives up (504).

The body must be exactly the contract (`contracts.strict`): unknown fields and
repeated keys are refused unless the route says `unknown_fields: ignore`. The
message id comes from signed material on a signed route, else from the
caller's Idempotency-Key (`workers.ingress.identity`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import asyncpg
import msgspec
import structlog
from aiohttp import web

from contracts import Event, InvalidPayload
from contracts.strict import decode_strict
from workers.errors import PublishFailed
from workers.ingress.auth import (
    Forbidden,
    Unauthorized,
    check_bearer,
    check_ip,
    verify_github,
    verify_standard_webhooks,
    verify_stripe,
)
from workers.ingress.broker import BrokerDown, BrokerLink
from workers.ingress.dedupe import RecentIds, Seen, SeenIds
from workers.ingress.identity import Ids, InvalidId, request_ids
from workers.ingress.intake import OutboxIntake
from workers.ingress.replies import AlreadyWaiting, ReplyListener
from workers.ingress.routes import Route
from workers.observability import context as tracing
from workers.runtime.outgoing import Outgoing, outgoing_event

log = structlog.get_logger("fleet.ingress")

JSON = "application/json"
_CHUNK = 64 * 1024
T = TypeVar("T")

LINK: web.AppKey[BrokerLink] = web.AppKey("link", BrokerLink)
ROUTES: web.AppKey[dict[str, Route]] = web.AppKey("routes", dict)
RECENT: web.AppKey[SeenIds] = web.AppKey("recent")
REPLIES: web.AppKey[ReplyListener] = web.AppKey("replies", ReplyListener)
INTAKE: web.AppKey[OutboxIntake | None] = web.AppKey("intake")


def make_app(
    routes: dict[str, Route],
    link: BrokerLink,
    replies: ReplyListener | None = None,
    seen: SeenIds | None = None,
    intake: OutboxIntake | None = None,
) -> web.Application:
    """The ingress application: `routes`, `/healthz`, `/readyz`, JSON 404s.

    Synchronous routes need `replies`, attached to `link` through its `on_open`.
    `seen` remembers the ids of repeatable requests (default: this process's memory).
    Routes with `accept: outbox` need `intake`, started.
    """
    if intake is None and any(r.accept == "outbox" for r in routes.values()):
        raise ValueError("routes with `accept: outbox` need an OutboxIntake")
    app = web.Application()
    app[LINK] = link
    app[ROUTES] = routes
    app[RECENT] = seen if seen is not None else RecentIds()
    app[REPLIES] = replies if replies is not None else ReplyListener({})
    app[INTAKE] = intake
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
    """Ready while what the routes need is up: the broker for routes that publish,
    the outbox's database for routes that accept into it."""
    routes = request.app[ROUTES].values()
    intake = request.app[INTAKE]
    if any(r.accept == "confirm" for r in routes) and not request.app[LINK].ready:
        return error(503, "the broker is unreachable")
    if intake is not None and not await intake.ready():
        return error(503, "the outbox's database is unreachable")
    return web.json_response({"status": "ready"})


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
    _admit(request, route)
    body = await _read(request, route.max_body)
    proof = _verify_signature(request, route, body)
    event, ids = _decode(request, route, body, proof)
    if route.accept == "outbox":
        return await _record(request, route, event, ids, body)
    message = outgoing_event(
        event,
        exchange=route.exchange,
        message_id=ids.message_id,
        correlation_id=ids.correlation_id,
        app_id="fleet.ingress",
        trace=tracing.for_request(request.headers),
    )
    if message.routing_key != route.routing_key:
        message = msgspec.structs.replace(message, routing_key=route.routing_key)
    if not ids.repeatable:
        return await _publish(request, route, message)
    return await _publish_once(request, route, message, body)


def _admit(request: web.Request, route: Route) -> None:
    """The checks made before the body is read: address, content type, size, bearer token."""
    if route.networks:
        try:
            check_ip(request.remote, route.networks)
        except Forbidden as exc:
            raise _Refused(error(403, str(exc))) from None
    if request.content_type != JSON:
        raise _Refused(error(415, f"expected Content-Type {JSON}, got {request.content_type}"))
    if request.content_length is not None and request.content_length > route.max_body:
        raise _Refused(error(413, f"the body exceeds {route.max_body} bytes"))
    if route.auth == "bearer":
        _authenticate(lambda: check_bearer(request.headers.get("Authorization"), route.secrets))


def _decode(
    request: web.Request, route: Route, body: bytes, proof: str | None
) -> tuple[Event, Ids]:
    """The event, exactly as the contract has it, and its ids (400 otherwise)."""
    try:
        event = decode_strict(route.event_type, body, unknown_fields=route.unknown_fields)
        return event, request_ids(route.auth, request.headers, body, proof)
    except InvalidPayload as exc:
        raise _Refused(error(400, exc.detail, path=exc.path)) from None
    except InvalidId as exc:
        raise _Refused(error(400, str(exc))) from None


async def _publish_once(
    request: web.Request, route: Route, message: Outgoing, body: bytes
) -> web.Response:
    """Publish unless this id was accepted (or is being published) within the window."""
    message_id = message.message_id
    recent = request.app[RECENT]
    try:
        seen = await recent.begin(route.path, message_id, body, route.dedupe_window)
    except Exception as exc:
        log.warning("ingress.dedupe_unavailable", path=route.path, error=str(exc))
        return error(503, "cannot check the id against earlier requests; try again")
    if seen is not Seen.NEW:
        return _repeated(seen, route, message_id)
    response = await _publish(request, route, message)
    try:
        if response.status < 300:
            await recent.accepted(route.path, message_id)
        else:
            await recent.abandon(route.path, message_id)
    except Exception as exc:  # the answer stands; a repeat is caught downstream
        log.warning("ingress.dedupe_unrecorded", message_id=message_id, error=str(exc))
    return response


async def _record(
    request: web.Request, route: Route, event: Event, ids: Ids, body: bytes
) -> web.Response:
    """Commit the event (and the request's id) to the outbox; 202 once committed."""
    intake = request.app[INTAKE]
    assert intake is not None  # make_app refuses outbox routes without one
    message_id = ids.message_id
    try:
        seen = await intake.record(route, event, ids, body, tracing.for_request(request.headers))
    except asyncpg.DataError as exc:
        return error(400, f"the event cannot be stored: {exc}")
    except Exception as exc:
        log.warning("ingress.outbox_unavailable", path=route.path, error=str(exc))
        return error(503, "cannot record the event in the outbox; try again")
    if seen is not Seen.NEW:
        return _repeated(seen, route, message_id)
    log.info(
        "ingress.accepted",
        path=route.path,
        type=event.__wire_name__,
        message_id=message_id,
        into="outbox",
    )
    return web.json_response({"message_id": message_id}, status=202)


def _verify_signature(request: web.Request, route: Route, body: bytes) -> str | None:
    """Check a signed webhook; what the check vouches for, from which the message
    id is derived (None on a route without a signature)."""
    headers = request.headers
    if route.auth == "standard-webhooks":
        return _authenticate(lambda: verify_standard_webhooks(headers, body, route.secrets))
    if route.auth == "github":
        return _authenticate(lambda: verify_github(headers, body, route.secrets))
    if route.auth == "stripe":
        return _authenticate(lambda: verify_stripe(headers, body, route.secrets))
    return None


def _repeated(seen: Seen, route: Route, message_id: str) -> web.Response:
    """The answer to a request whose id was seen within the route's dedupe window."""
    if seen is Seen.DUPLICATE:
        log.info("ingress.duplicate", path=route.path, message_id=message_id)
        return web.json_response({"message_id": message_id, "duplicate": True}, status=200)
    if seen is Seen.CONFLICT:
        return error(
            422,
            f"id {message_id!r} was already used for a different body",
            message_id=message_id,
        )
    return error(409, f"a request with id {message_id!r} is in progress", message_id=message_id)


async def _publish(request: web.Request, route: Route, message: Outgoing) -> web.Response:
    """Publish with a confirm (and, on a synchronous route, wait for the answer)."""
    if route.reply is None:
        return await _confirmed(request, route, message)
    try:
        with request.app[REPLIES].expect(message.correlation_id, route.reply.types) as answer:
            published = await _confirmed(request, route, message)
            if published.status != 202:
                return published
            try:
                got = await asyncio.wait_for(answer, route.reply.timeout)
            except TimeoutError:
                return error(
                    504,
                    f"the event was accepted, but no answer came within {route.reply.timeout:g}s",
                    message_id=message.message_id,
                )
    except AlreadyWaiting:
        return error(
            409,
            f"a request with correlation id {message.correlation_id!r} is waiting already",
        )
    return web.Response(
        body=got.body,
        status=200,
        content_type=JSON,
        headers={"X-Fleet-Event-Type": got.type, "X-Fleet-Message-Id": got.message_id or ""},
    )


async def _confirmed(request: web.Request, route: Route, message: Outgoing) -> web.Response:
    message_id = message.message_id
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
    try:
        while chunk := await request.content.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _Refused(error(413, f"the body exceeds {limit} bytes"))
            chunks.append(chunk)
    except ConnectionError:
        # The client went away, or was cut off for sending too slowly
        # (`workers.ingress.guard`): nobody is left to read an answer.
        raise _Refused(error(408, "the request was not received in time")) from None
    return b"".join(chunks)
