"""Who may use the console, and how it keeps a page from acting for someone else.

    loopback, no tokens    open to the local user: anyone on this machine
    any tokens set         every page needs a token: FLEET_CONSOLE_TOKEN acts,
                           FLEET_CONSOLE_READONLY_TOKEN sees everything, changes nothing
    non-loopback address   refused without a token (`check_bind`)

A token comes as `Authorization: Bearer …` (scripts) or through the login form,
which gives a session cookie (HttpOnly, SameSite=Strict). Every state-changing
request is a POST carrying the session's CSRF token; a bearer request needs
none, since no other site can make a browser send that header. With no tokens
the Host header must name the loopback, so a page on another site that rebinds
its DNS name to 127.0.0.1 cannot read the console.
"""

from __future__ import annotations

import getpass
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

OPERATOR = "operator"
READ_ONLY = "read-only"
COOKIE = "fleet_console"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


class ConsoleRefused(Exception):
    """The console will not start with this configuration."""


@dataclass(frozen=True)
class Access:
    """The tokens from the environment; None when unset."""

    token: str | None = None
    readonly_token: str | None = None

    @property
    def open(self) -> bool:
        """No token is set: only allowed on the loopback."""
        return not self.token and not self.readonly_token

    def role_of(self, presented: str) -> str | None:
        """The role a presented token gives, compared in constant time; None if neither."""
        if self.token and hmac.compare_digest(presented.encode(), self.token.encode()):
            return OPERATOR
        if self.readonly_token and hmac.compare_digest(
            presented.encode(), self.readonly_token.encode()
        ):
            return READ_ONLY
        return None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the console on this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name (or "" = every address) could resolve anywhere


def check_bind(host: str, access: Access) -> None:
    """Refuse a non-loopback address without a token, and tokens too short to be secret.

    Raises:
        ConsoleRefused: with the fix in its message.
    """
    for name, value in (("FLEET_CONSOLE_TOKEN", access.token),
                        ("FLEET_CONSOLE_READONLY_TOKEN", access.readonly_token)):  # fmt: skip
        if value is not None and len(value) < 16:
            raise ConsoleRefused(f"{name} is shorter than 16 characters: use a random one")
    if access.token and access.token == access.readonly_token:
        raise ConsoleRefused("FLEET_CONSOLE_TOKEN and FLEET_CONSOLE_READONLY_TOKEN are the same")
    if not is_loopback(host) and access.open:
        raise ConsoleRefused(
            f"refusing to serve on {host!r} without a token: set FLEET_CONSOLE_TOKEN (and "
            "FLEET_CONSOLE_READONLY_TOKEN for read-only users), or bind to 127.0.0.1"
        )


def host_is_loopback(host_header: str) -> bool:
    """Whether a request's Host header (``127.0.0.1:8090``) names the loopback."""
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    if host_header.startswith("["):
        host = host_header.split("]")[0] + "]"
    return is_loopback(host)


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its role, the name it gave, and its CSRF token."""

    id: str
    role: str
    who: str
    csrf: str


class Sessions:
    """Sessions in memory: restarting the console signs everyone out."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def new(self, role: str, who: str) -> Session:
        session = Session(secrets.token_urlsafe(32), role, who, secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        return self._sessions.get(session_id) if session_id else None

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)


def local_user() -> str:
    """Who is at the keyboard when the console is open on the loopback."""
    try:
        return f"local:{getpass.getuser()}"
    except OSError:
        return "local"


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())
