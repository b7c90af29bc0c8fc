"""Slow and abusive HTTP clients, cut off at the connection.

aiohttp reads a request for as long as its client cares to send it: a client
that sends its head or body a byte at a time, or stops half way, holds a
connection (a file descriptor, a parser, a task) indefinitely, and a few
hundred of them starve the process (slowloris). aiohttp has no timeout for
reading a request; its keep-alive timer closes idle connections only.

`Guard` watches every connection between asyncio and aiohttp's protocol. Each
byte passes through to aiohttp untouched; the guard only notes when it came,
and a middleware tells it when aiohttp has parsed a head and when the ingress
is done with the request. From that, `cut_at` (pure) says when a connection
must be cut, by the topology's `ingress.limits`:

    head   the request line and headers within `head_timeout` of the
           connection opening (of their first byte on a kept-alive connection)
    body   `body_timeout`, plus one second per `min_body_rate` bytes received
    idle   mid-request (head or body), no byte for `idle_timeout`
    kept alive between requests, closed after `keepalive_timeout`

A cut connection gets ``408 Request Timeout`` and is closed (a reset, if the
client keeps sending). Past `max_connections` open connections, a new one is
answered ``503`` and closed at once, never queued. While the ingress itself
works on a request (decoding, awaiting the broker's confirm or a reply)
nothing is timed here: that is the route's business.

This is the one module that stands between asyncio and aiohttp's protocol; it
relies only on public aiohttp API: `web.AppRunner.server` is the factory of
the per-connection protocol (an `asyncio.Protocol`), `request.protocol` is the
protocol serving a request, `request.content.is_eof()` says whether its body
is in, and middlewares run for every routed request.
`tests/unit/test_ingress_guard.py::TestAiohttpShape` fails if any of that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import structlog
from aiohttp import web

from topology.model import IngressLimits

log = structlog.get_logger("fleet.ingress")

#: Seconds a cut connection may take to flush its answer before it is aborted.
_FLUSH_SECONDS = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Phase(enum.Enum):
    """Where a connection is in its current request."""

    #: Waiting for (the rest of) a request line and headers.
    HEAD = "head"
    #: aiohttp parsed the head; the body is still arriving.
    BODY = "body"
    #: The request is in; the ingress is working on it. Nothing is timed.
    BUSY = "busy"
    #: Kept alive between requests.
    IDLE = "idle"


@dataclass
class Progress:
    """What the guard knows of one connection's current phase."""

    phase: Phase
    #: When the phase began (event loop time).
    since: float
    #: When the phase's last byte arrived; None before its first.
    last_byte: float | None = None
    #: Bytes received since the body phase began.
    body_bytes: int = 0


def cut_at(progress: Progress, limits: IngressLimits) -> tuple[float, str] | None:
    """When a connection must be cut, and which limit it broke; None while the
    ingress itself is working on its request."""
    idle = limits.idle_timeout.seconds
    if progress.phase is Phase.HEAD:
        due = [(progress.since + limits.head_timeout.seconds, "head_timeout")]
        if progress.last_byte is not None:
            due.append((progress.last_byte + idle, "idle_timeout"))
        return min(due)
    if progress.phase is Phase.BODY:
        allowed = limits.body_timeout.seconds + progress.body_bytes / limits.min_body_rate
        last = progress.since if progress.last_byte is None else progress.last_byte
        return min((progress.since + allowed, "min_body_rate"), (last + idle, "idle_timeout"))
    if progress.phase is Phase.IDLE:
        return progress.since + limits.keepalive_timeout.seconds, "keepalive_timeout"
    return None


def _answer(status: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, written past aiohttp."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_SLOW = {
    reason: _answer("408 Request Timeout", f"the request was not received in time ({reason})")
    for reason in ("head_timeout", "idle_timeout", "min_body_rate")
}
_FULL = _answer("503 Service Unavailable", "too many connections; try again")


class Guard:
    """Watches the connections of one listening socket: see the module docstring."""

    def __init__(self, limits: IngressLimits):
        self.limits = limits
        #: Connections made, by the aiohttp protocol serving each.
        self._open: dict[asyncio.BaseProtocol, _Watch] = {}
        #: Accepted but not yet made (held weakly: a connection whose transport
        #: could not be set up is dropped by asyncio without a word).
        self._starting: weakref.WeakSet[_Watch] = weakref.WeakSet()
        self._full = False

    @property
    def connections(self) -> int:
        """Connections open or opening now (refused ones are not counted)."""
        return len(self._open) + len(self._starting)

    def install(self, app: web.Application) -> None:
        """Add the middleware that reports each request's progress (before the app starts)."""
        app.middlewares.append(self._middleware)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The factory for `loop.create_server`: aiohttp's protocol, watched."""

        def make() -> asyncio.Protocol:
            if self.connections >= self.limits.max_connections:
                if not self._full:
                    log.warning("ingress.connections_full", limit=self.limits.max_connections)
                self._full = True
                return _Refuse()
            self._full = False
            watch = _Watch(self, server())
            self._starting.add(watch)
            return watch

        return make

    def _made(self, watch: _Watch) -> None:
        self._starting.discard(watch)
        self._open[watch.inner] = watch

    def _lost(self, watch: _Watch) -> None:
        self._starting.discard(watch)
        self._open.pop(watch.inner, None)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        watch = self._open.get(request.protocol)
        if watch is None:  # served without this guard's listener (a test server)
            return await handler(request)
        watch.request_started(request)
        try:
            return await handler(request)
        finally:
            watch.request_finished()


class _Watch(asyncio.Protocol):
    """One connection: passes everything to aiohttp's protocol, and cuts it when
    `cut_at` says so."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol):
        self.inner = inner
        self._guard = guard
        self._loop = asyncio.get_running_loop()
        self._progress = Progress(Phase.HEAD, self._loop.time())
        self._request: web.BaseRequest | None = None
        #: Bytes arrived while busy: the next (pipelined) request has begun.
        self._early = False
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._abort: asyncio.TimerHandle | None = None
        self._cut_off = False

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._transport = cast(asyncio.Transport, transport)
        self._guard._made(self)
        self.inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        progress = self._progress
        if progress.phase is Phase.IDLE:
            self._enter(Progress(Phase.HEAD, now, last_byte=now))
        elif progress.phase is Phase.HEAD:
            first = progress.last_byte is None
            progress.last_byte = now
            if first:
                self._arm()  # the idle limit starts with the first byte
        elif progress.phase is Phase.BODY:
            progress.last_byte = now
            progress.body_bytes += len(data)
        else:
            self._early = True
        self.inner.data_received(data)
        request = self._request
        if self._progress.phase is Phase.BODY and request is not None and request.content.is_eof():
            self._enter(Progress(Phase.BUSY, now))

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._timer, self._abort):
            if handle is not None:
                handle.cancel()
        self._timer = self._abort = None
        self._transport = None
        self._guard._lost(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # the middleware's side

    def request_started(self, request: web.BaseRequest) -> None:
        """aiohttp parsed a head and calls the ingress: time the body, if one is still due."""
        now = self._loop.time()
        self._request = request
        if request.content.is_eof():
            self._enter(Progress(Phase.BUSY, now))
        else:
            self._enter(Progress(Phase.BODY, now, last_byte=now))

    def request_finished(self) -> None:
        """The ingress answered: the connection idles, or its next request has begun."""
        now = self._loop.time()
        self._request = None
        if self._early:
            self._enter(Progress(Phase.HEAD, now, last_byte=now))
        else:
            self._enter(Progress(Phase.IDLE, now))
        self._early = False

    # the timer

    def _enter(self, progress: Progress) -> None:
        self._progress = progress
        self._arm()

    def _arm(self) -> None:
        """Make sure the timer fires no later than the current deadline.

        Bytes only ever move a deadline later, so the timer is left alone when
        it fires earlier than needed: `_check` then sets it again.
        """
        if self._transport is None or self._cut_off:
            return
        due = cut_at(self._progress, self._guard.limits)
        if due is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        if self._timer is not None:
            if self._timer.when() <= due[0]:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(due[0], self._check)

    def _check(self) -> None:
        self._timer = None
        due = cut_at(self._progress, self._guard.limits)
        if due is None or self._transport is None:
            return
        when, reason = due
        if self._loop.time() < when:
            self._timer = self._loop.call_at(when, self._check)
            return
        self._cut(reason)

    def _cut(self, reason: str) -> None:
        transport = self._transport
        assert transport is not None
        self._cut_off = True
        if reason in _TOO_SLOW:
            log.info(
                "ingress.client_cut",
                reason=reason,
                phase=self._progress.phase.value,
                peer=_peer(transport),
            )
            transport.write(_TOO_SLOW[reason])
        transport.close()
        # close() waits for the answer to be flushed: a client that reads
        # nothing must not hold the connection that way either.
        self._abort = self._loop.call_later(_FLUSH_SECONDS, transport.abort)


class _Refuse(asyncio.Protocol):
    """A connection past `max_connections`: answered 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.write(_FULL)
        stream.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)


@dataclass(frozen=True)
class Listening:
    """A guarded listener: its port, and the guard watching its connections."""

    port: int
    guard: Guard


@contextlib.asynccontextmanager
async def listen(
    app: web.Application, host: str, port: int, limits: IngressLimits
) -> AsyncIterator[Listening]:
    """Serve `app` on host:port (0: any free port) with every connection guarded.

    On exit the socket stops listening, then aiohttp lets in-flight requests
    finish and closes every connection.
    """
    guard = Guard(limits)
    guard.install(app)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.keepalive_timeout.seconds)
    await runner.setup()
    try:
        assert runner.server is not None
        server = await asyncio.get_running_loop().create_server(
            guard.protocol_factory(runner.server), host, port, reuse_address=True
        )
        try:
            yield Listening(server.sockets[0].getsockname()[1], guard)
        finally:
            server.close()
    finally:
        await runner.cleanup()
