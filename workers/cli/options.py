"""Options shared by several commands; only click reads the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import click
import structlog

from topology import PROJECT_FILE, Topology
from topology.names import broker_user
from topology.nodes import join_urls, split_urls
from topology.passwords import with_password
from workers.project import use_project_paths

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"

F = TypeVar("F", bound=Callable[..., Any])


def url_option(function: F) -> F:
    """``--url`` / FLEET_AMQP_URL: the broker (its path is the vhost); see `resolve_url`."""
    return click.option(
        "--url",
        envvar="FLEET_AMQP_URL",
        default=None,
        help="AMQP URL of the broker, the path being the vhost; several, comma-separated, "
        "name the nodes of a cluster (env FLEET_AMQP_URL; else the file's broker.urls; "
        f"else {DEFAULT_AMQP_URL}). A user without a password (amqp://fleet-orders@host/) "
        "takes it from FLEET_PASSWORD_<USER>; amqps:// takes ?cafile=, certfile=, keyfile=.",
    )(function)


def resolve_url(url: str | None, topology: Topology | None = None) -> str:
    """The broker's node URL(s): ``--url``, else FLEET_AMQP_URL (click reads both into
    `url`), else the topology file's `broker.urls`, else the local default. A URL
    naming a user without a password gets it from FLEET_PASSWORD_<USER>.

    Raises:
        click.BadParameter: an entry is not an AMQP URL, or names a user whose
            password is neither in it nor in the environment.
    """
    if url is None and topology is not None and topology.broker.urls:
        url = join_urls(topology.broker.urls)
    url = url or DEFAULT_AMQP_URL
    try:
        return join_urls(with_password(u, os.environ) for u in split_urls(url))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url' / FLEET_AMQP_URL") from None


def warn_unless_own_user(topology: Topology, process: str, url: str) -> None:
    """Under `access.users`, log a warning when a process connects as another user than
    its own (the operator's, say): it then has more rights than it needs."""
    if not topology.access.users:
        return
    own = broker_user(topology.access.prefix, process)
    username = urlsplit(split_urls(url)[0]).username
    user = unquote(username) if username is not None else "guest"
    if user != own:
        structlog.get_logger("fleet.access").warning(
            "access.not_own_user",
            process=process,
            user=user,
            own_user=own,
            fix=f"connect with --url amqp://{own}@host/vhost (password: FLEET_PASSWORD_…)",
        )


def management_url_option(function: F) -> F:
    """``--management-url`` / FLEET_MANAGEMENT_URL: the management HTTP API."""
    return click.option(
        "--management-url",
        envvar="FLEET_MANAGEMENT_URL",
        default=None,
        help="Management API base URL (env FLEET_MANAGEMENT_URL); default: the AMQP host on "
        "port 15672 with the same credentials.",
    )(function)


def passwords_file_option(function: F) -> F:
    """``--passwords-file`` / FLEET_PASSWORDS_FILE: the broker users' passwords."""
    return click.option(
        "--passwords-file",
        envvar="FLEET_PASSWORDS_FILE",
        type=click.Path(dir_okay=False),
        default=None,
        help="The passwords of the users access.users makes, one user:password a line "
        "(env FLEET_PASSWORDS_FILE); a user not listed takes FLEET_PASSWORD_<USER> "
        "(fleet-orders: FLEET_PASSWORD_FLEET_ORDERS).",
    )(function)


def metrics_port_option(function: F) -> F:
    """``--metrics-port`` / FLEET_METRICS_PORT: where a worker serves /metrics."""
    return click.option(
        "--metrics-port",
        envvar="FLEET_METRICS_PORT",
        type=click.IntRange(min=0, max=65535),
        default=None,
        help="Port of the Prometheus /metrics endpoint (env FLEET_METRICS_PORT); default: "
        "the topology's metrics.port (9100); 0 turns metrics off.",
    )(function)


def file_option(function: F) -> F:
    """``--file`` / FLEET_TOPOLOGY / ./fleet.yaml: the topology file, as an absolute path
    (None when none is named and the working directory has none), its directory put
    on the import path."""
    return click.option(
        "--file",
        "-f",
        "topology_file",
        envvar="FLEET_TOPOLOGY",
        type=click.Path(dir_okay=False),
        default=None,
        callback=_project_file,
        help=f"Topology file (env FLEET_TOPOLOGY); default: ./{PROJECT_FILE} in the "
        "working directory.",
    )(function)


def _project_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    found = Path(value) if value is not None else Path.cwd() / PROJECT_FILE
    if value is None and not found.is_file():
        return None  # a command that needs a file says so (topology.TopologyNotFound)
    use_project_paths(found)
    return str(found.resolve())
