"""Options shared by several commands; only click reads the environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from topology import Topology
from topology.nodes import join_urls, split_urls

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
        f"else {DEFAULT_AMQP_URL}).",
    )(function)


def resolve_url(url: str | None, topology: Topology | None = None) -> str:
    """The broker's node URL(s): ``--url``, else FLEET_AMQP_URL (click reads both into
    `url`), else the topology file's `broker.urls`, else the local default.

    Raises:
        click.BadParameter: an entry is not an AMQP URL.
    """
    if url is None and topology is not None and topology.broker.urls:
        url = join_urls(topology.broker.urls)
    url = url or DEFAULT_AMQP_URL
    try:
        return join_urls(split_urls(url))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--url' / FLEET_AMQP_URL") from None


def management_url_option(function: F) -> F:
    """``--management-url`` / FLEET_MANAGEMENT_URL: the management HTTP API."""
    return click.option(
        "--management-url",
        envvar="FLEET_MANAGEMENT_URL",
        default=None,
        help="Management API base URL (env FLEET_MANAGEMENT_URL); default: the AMQP host on "
        "port 15672 with the same credentials.",
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
    """``--file`` / FLEET_TOPOLOGY: the topology file."""
    return click.option(
        "--file",
        "-f",
        "topology_file",
        envvar="FLEET_TOPOLOGY",
        type=click.Path(dir_okay=False),
        default=None,
        help="Topology file (env FLEET_TOPOLOGY); default: the reference topology/fleet.yaml.",
    )(function)
