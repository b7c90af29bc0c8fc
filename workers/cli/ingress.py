"""`fleet ingress`: serve the topology's HTTP routes, publishing each POST as an event."""

from __future__ import annotations

import os

import click

from topology import Topology, load
from topology.names import INGRESS_PROCESS
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, resolve_url, url_option, warn_unless_own_user
from workers.ingress.routes import IngressConfigError, Route, resolve_routes
from workers.loader import import_contracts
from workers.runtime.loop import run
from workers.runtime.shutdown import Shutdown

EXAMPLES = """
\b
Examples:
  fleet ingress run
  fleet ingress run --host 0.0.0.0 --port 8080 --file examples/fulfilment/fleet.yaml
  curl -i localhost:8080/orders -H 'Content-Type: application/json' \\
    -H 'Idempotency-Key: order-o-1' -d @order.json
"""


@cli.group(epilog=EXAMPLES)
def ingress() -> None:
    """Run the HTTP ingress: POSTed JSON becomes events on the broker.

    Routes are declared in the topology file under `ingress.routes`.
    """


@ingress.command("run", epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="TCP port."
)
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="PostgreSQL URL: remember request ids there, shared by every ingress "
    "replica and kept across restarts (env FLEET_DATABASE_URL; default: this "
    "process's memory).",
)
@file_option
@url_option
def run_command(
    host: str, port: int, database_url: str | None, topology_file: str | None, url: str | None
) -> None:
    """Serve the topology's ingress routes until SIGTERM or Ctrl-C.

    Each route validates the body against its contract and answers 202 with
    the message id only after the broker confirmed the event; a route with
    `accept: outbox`, once the event committed in the outbox's database (the
    variable outbox.database_env names), for `fleet outbox run` to publish. Reconnects to
    the broker by itself; /readyz says whether it is connected. Slow clients
    are cut off and connections capped per `ingress.limits` in the topology.
    Serves plain HTTP: terminate TLS in a reverse proxy in front of it.
    """
    from workers.ingress.serve import serve

    topology = load(topology_file)
    registry = import_contracts(topology)
    if not topology.ingress.routes:
        fail("the topology declares no ingress routes (add ingress.routes)", EXIT_USAGE)
    try:
        routes = resolve_routes(topology, registry)
    except IngressConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    from workers.observability import context as tracing

    outbox_url = _outbox_url(topology, routes, database_url)
    nodes = resolve_url(url, topology)
    warn_unless_own_user(topology, INGRESS_PROCESS, nodes)
    tracing.configure("fleet.ingress")  # spans only when OTEL_* name an exporter
    shutdown = Shutdown()

    async def main() -> None:
        shutdown.install()
        await serve(
            routes,
            nodes,
            host=host,
            port=port,
            shutdown=shutdown,
            database_url=database_url,
            outbox_url=outbox_url,
            limits=topology.ingress.limits,
        )

    try:
        run(main())
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")


def _outbox_url(topology: Topology, routes: dict[str, Route], given: str | None) -> str | None:
    """The outbox's database, for routes with `accept: outbox`: the variable the
    topology's `outbox.database_env` names, else --database-url."""
    if not any(route.accept == "outbox" for route in routes.values()):
        return None
    env = topology.outbox.database_env if topology.outbox is not None else "FLEET_DATABASE_URL"
    url = os.environ.get(env) or given
    if not url:
        fail(
            f"routes with `accept: outbox` need the outbox's database: set {env} "
            "(or pass --database-url)",
            EXIT_USAGE,
        )
    return url
