"""`fleet ingress`: serve the topology's HTTP routes, publishing each POST as an event."""

from __future__ import annotations

import click

from topology import load
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, resolve_url, url_option
from workers.ingress.routes import IngressConfigError, resolve_routes
from workers.loader import import_contracts
from workers.runtime.loop import run
from workers.runtime.shutdown import Shutdown

EXAMPLES = """
\b
Examples:
  fleet ingress run
  fleet ingress run --host 0.0.0.0 --port 8080 --file topology/fleet.yaml
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
    help="PostgreSQL URL: remember caller-given ids there, shared by every ingress "
    "replica (env FLEET_DATABASE_URL; default: this process's memory).",
)
@file_option
@url_option
def run_command(
    host: str, port: int, database_url: str | None, topology_file: str | None, url: str | None
) -> None:
    """Serve the topology's ingress routes until SIGTERM or Ctrl-C.

    Each route validates the body against its contract and answers 202 with
    the message id only after the broker confirmed the event. Reconnects to
    the broker by itself; /readyz says whether it is connected.
    """
    from contracts import default_registry
    from workers.ingress.serve import serve

    import_contracts(topology_file)
    topology = load(topology_file)
    if not topology.ingress.routes:
        fail("the topology declares no ingress routes (add ingress.routes)", EXIT_USAGE)
    try:
        routes = resolve_routes(topology, default_registry)
    except IngressConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    from workers.observability import context as tracing

    tracing.configure("fleet.ingress")  # spans only when OTEL_* name an exporter
    shutdown = Shutdown()

    async def main() -> None:
        shutdown.install()
        await serve(
            routes,
            resolve_url(url, topology),
            host=host,
            port=port,
            shutdown=shutdown,
            database_url=database_url,
        )

    try:
        run(main())
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
