"""The console's aiohttp application: shared state, access control, routes.

Pages live in workers/console/pages/, one module each; this module wires them
to the broker, the database and the audit log, and guards every request (see
`security`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from aio_pika.abc import AbstractConnection
from aiohttp import web

from topology import BrokerRefused, BrokerUnreachable, Topology
from topology.management import Management
from workers.console import security
from workers.console.audit import AuditLog, JsonlAudit, PostgresAudit
from workers.console.html import e, page
from workers.console.index import FailureIndex
from workers.console.security import COOKIE, READ_ONLY, Access, Session, Sessions
from workers.runtime.connection import CONNECTION_ERRORS, connect

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Settings:
    """How the console was started (the `fleet console` options, parsed)."""

    topology: Topology
    topology_file: str | None
    amqp_url: str  # one node
    management_url: str | None = None
    database_url: str | None = None
    audit_file: Path = Path("fleet-console-audit.jsonl")
    access: Access = field(default_factory=Access)
    browse_limit: int = 50_000
    max_age: float = 3.0
    refresh_seconds: float = 2.0
    prometheus_url: str | None = None  # the overview adds its figures and alerts


class Console:
    """What every page reads from: the broker, the database, the audit log."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = settings.topology
        self.sessions = Sessions()
        self.connection: AbstractConnection | None = None
        self.management: Management | None = None
        self.pool: asyncpg.Pool | None = None
        self.index: FailureIndex | None = None
        self.audit: AuditLog = JsonlAudit(settings.audit_file)
        self.http: aiohttp.ClientSession | None = None  # to Prometheus, when configured

    async def start(self, app: web.Application) -> None:
        self._reconnecting = asyncio.Lock()
        self.connection = await connect(self.settings.amqp_url, name="fleet console")
        self.management = Management.for_broker(
            self.settings.amqp_url, self.settings.management_url
        )
        self.index = FailureIndex(
            self.broker_connection,
            limit=self.settings.browse_limit,
            max_age=self.settings.max_age,
        )
        if self.settings.prometheus_url:
            self.http = aiohttp.ClientSession()
        if self.settings.database_url:
            self.pool = await asyncpg.create_pool(
                self.settings.database_url, min_size=1, max_size=4
            )
            audit = PostgresAudit(self.pool)
            await audit.install()
            self.audit = audit

    async def stop(self, app: web.Application) -> None:
        if self.http is not None:
            await self.http.close()
        if self.pool is not None:
            await self.pool.close()
        if self.management is not None:
            self.management.close()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 5)

    def broker_connection(self) -> AbstractConnection:
        """The connection pages read with (`reconnect` renews it before each request)."""
        if self.connection is None:
            raise RuntimeError("the console has not started")
        return self.connection

    async def reconnect(self) -> None:
        """Open the broker connection again if the broker closed it (a restart, a
        forced close): the console outlives its broker's restarts."""
        if self.connection is not None and _open(self.connection):
            return
        async with self._reconnecting:
            if self.connection is not None and _open(self.connection):
                return
            old, self.connection = self.connection, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.close(), 5)
            self.connection = await connect(self.settings.amqp_url, name="fleet console")

    @property
    def ready(self) -> tuple[AbstractConnection, Management, FailureIndex]:
        if self.connection is None or self.management is None or self.index is None:
            raise RuntimeError("the console has not started")
        return self.connection, self.management, self.index


#: What a request meets when the broker is down or went away: a 503, not a 500.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    BrokerUnreachable,
    BrokerRefused,
    *CONNECTION_ERRORS,
)


def _open(connection: AbstractConnection) -> bool:
    # aio-pika clears `connected` when the broker closes the connection; `is_closed`
    # says only that close() was called here.
    return not connection.is_closed and connection.connected.is_set()


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", object)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def session_of(request: web.Request) -> Session | None:
    session = request.get(SESSION)
    return session if isinstance(session, Session) else None


def make_app(settings: Settings) -> web.Application:
    """The console as an aiohttp application (started by `fleet console`, and by tests)."""
    from workers.console.pages import audit, failures, overview, sagas, topology

    console = Console(settings)
    app = web.Application(middlewares=[_guard], client_max_size=4 * 1024 * 1024)
    app[CONSOLE] = console
    app.on_startup.append(console.start)
    app.on_cleanup.append(console.stop)
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
    app.router.add_get("/healthz", _health)
    for module in (overview, failures, sagas, topology, audit):
        module.routes(app)
    return app


# -- access -------------------------------------------------------------------------

PUBLIC = {"/login", "/healthz"}


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request: who is it, may they see this, may they change that."""
    console = console_of(request)
    access = console.settings.access
    if access.open and not security.host_is_loopback(request.host):
        raise web.HTTPForbidden(text="open only on the loopback: use http://127.0.0.1")
    session, bearer = _identify(request, console)
    if session is None and request.path not in PUBLIC:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return _login_page(request, status=401)
        raise web.HTTPUnauthorized(
            text="a token is needed: Authorization: Bearer <FLEET_CONSOLE_TOKEN>, or sign in "
            "at /login",
            headers={"WWW-Authenticate": 'Bearer realm="fleet console"'},
        )
    request[SESSION] = session
    if request.method not in ("GET", "HEAD") and request.path not in PUBLIC:
        assert session is not None
        if request.path != "/logout" and session.role == READ_ONLY:
            raise web.HTTPForbidden(text="read-only: this token can see everything, change nothing")
        if not bearer:
            form = await request.post()
            token = form.get("csrf")
            if not isinstance(token, str) or not security.csrf_ok(session, token):
                raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page")
    try:
        if request.path not in PUBLIC:
            await console.reconnect()
        response = await handler(request)
    except _UNREACHABLE as error:
        raise web.HTTPServiceUnavailable(
            text=f"the broker is unreachable ({error}); the console retries on the next request"
        ) from error
    if access.open and session is not None and request.cookies.get(COOKIE) != session.id:
        _set_cookie(response, session)
    return response


def _identify(request: web.Request, console: Console) -> tuple[Session | None, bool]:
    """The request's session, and whether it came by bearer token."""
    access = console.settings.access
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        role = access.role_of(header[len("Bearer ") :].strip())
        if role is None:
            return None, True
        return Session("bearer", role, f"bearer ({role})", ""), True
    session = console.sessions.get(request.cookies.get(COOKIE))
    if session is None and access.open:
        session = console.sessions.new(security.OPERATOR, security.local_user())
    return session, False


def _set_cookie(response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", path="/")


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _login_form(request: web.Request) -> web.Response:
    return _login_page(request)


def _login_page(request: web.Request, *, status: int = 200, error: str = "") -> web.Response:
    body = (
        (f'<p class="banner">{e(error)}</p>' if error else "")
        + "<p>This console needs a token (FLEET_CONSOLE_TOKEN, or FLEET_CONSOLE_READONLY_TOKEN "
        "to look without changing anything).</p>"
        '<form method="post" action="/login"><p><label>Your name (for the audit log) '
        '<input name="who" required></label></p><p><label>Token <input name="token" '
        'type="password" required></label></p><button>Sign in</button></form>'
    )
    return web.Response(
        text=page("Sign in", body, None, "/login"), content_type="text/html", status=status
    )


async def _login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    token, who = str(form.get("token", "")), str(form.get("who", "")).strip()[:80]
    role = console.settings.access.role_of(token) if token else None
    if role is None or not who:
        return _login_page(request, status=401, error="wrong token (or no name given)")
    session = console.sessions.new(role, who)
    response = web.Response(status=303, headers={"Location": "/"})
    _set_cookie(response, session)
    return response


async def _logout(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    console.sessions.end(request.cookies.get(COOKIE))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response


def html(request: web.Request, title: str, body: str, *, status: int = 200,
         script: str = "") -> web.Response:  # fmt: skip
    """A page of the console, with its navigation."""
    text = page(title, body, session_of(request), request.path, script=script)
    return web.Response(text=text, content_type="text/html", status=status)
