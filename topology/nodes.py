"""The broker as a list of nodes: one URL, or one per node of a cluster.

Where a URL is accepted (`--url`, FLEET_AMQP_URL, the file's `broker.urls`), a
comma-separated list names several nodes of one cluster; every node serves
every queue, so a client may use whichever answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_AMQP_PORT = 5672
DEFAULT_AMQPS_PORT = 5671


def split_urls(text: str) -> list[str]:
    """``"amqp://a/,amqp://b/"`` → ``["amqp://a/", "amqp://b/"]``; spaces and empty
    entries are dropped (a comma inside a password must be written ``%2C``).

    Raises:
        ValueError: no URL at all, or an entry that is not an amqp(s) URL.
    """
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise ValueError("no broker URL given")
    for url in urls:
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise ValueError(
                f"not an AMQP URL: {url!r} (write amqp://user:password@host:port/vhost)"
            )
    return urls


def join_urls(urls: Iterable[str]) -> str:
    """The list as one comma-separated string, the form the CLI and environment take."""
    return ",".join(urls)


def first_reachable(urls: str, *, timeout: float = 2.0) -> str:
    """The first node of the list whose port accepts a TCP connection, else the first.

    For one-shot administrative commands that talk to one node (topology apply,
    dlq), where any node will do. The probe does not log in: a node that
    accepts the connection but refuses the login is still chosen, and the
    caller's own connection reports why.
    """
    candidates = split_urls(urls)
    for url in candidates:
        parts = urlsplit(url)
        default = DEFAULT_AMQPS_PORT if parts.scheme == "amqps" else DEFAULT_AMQP_PORT
        try:
            with socket.create_connection(
                (parts.hostname or "localhost", parts.port or default), timeout
            ):
                return url
        except OSError:
            continue
    return candidates[0]


def with_credentials(url: str, user: str, password: str | None = None) -> str:
    """`url` with its user (and password, if given) replaced, both percent-encoded:
    ``amqp://guest:guest@rabbit/shop`` + fleet-orders → ``amqp://fleet-orders@rabbit/shop``."""
    parts = urlsplit(url)
    credentials = quote(user, safe="")
    if password is not None:
        credentials += ":" + quote(password, safe="")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{credentials}@{host}"))
