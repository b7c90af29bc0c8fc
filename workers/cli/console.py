"""`fleet console`: the operator console in a browser (overview, failures, sagas, topology)."""

from __future__ import annotations

import os
from pathlib import Path

import click
from aiohttp import web

from topology import load
from topology.nodes import first_reachable
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, management_url_option, resolve_url, url_option
from workers.cli.saga import database_url_option
from workers.console.security import Access, ConsoleRefused, check_bind

EXAMPLES = """
\b
Examples:
  fleet console                                   # http://127.0.0.1:8090, this machine only
  fleet console --database-url postgresql://postgres@127.0.0.1:5432/fleet
  fleet console --prometheus-url http://127.0.0.1:9090   # + its rates and firing alerts
  FLEET_CONSOLE_TOKEN=$(openssl rand -hex 24) \\
  FLEET_CONSOLE_READONLY_TOKEN=$(openssl rand -hex 24) fleet console --host 0.0.0.0
  curl -H "Authorization: Bearer $FLEET_CONSOLE_READONLY_TOKEN" http://host:8090/overview/table
"""


@cli.command(epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FLEET_CONSOLE_HOST",
              help="Address to listen on; any but the loopback needs a token.")  # fmt: skip
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8090, show_default=True,
              envvar="FLEET_CONSOLE_PORT", help="Port to listen on.")  # fmt: skip
@click.option("--audit-file", type=click.Path(dir_okay=False), default="fleet-console-audit.jsonl",
              show_default=True, envvar="FLEET_CONSOLE_AUDIT_FILE",
              help="Where the audit log goes when there is no --database-url (JSONL).")  # fmt: skip
@click.option("--browse-limit", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="At most this many messages are read from one dead-letter queue.")  # fmt: skip
@click.option("--prometheus-url", envvar="FLEET_PROMETHEUS_URL", default=None,
              help="A Prometheus scraping the workers: the overview adds its figures and "
              "firing alerts.")  # fmt: skip
@database_url_option
@file_option
@url_option
@management_url_option
def console(
    host: str,
    port: int,
    audit_file: str,
    browse_limit: int,
    prometheus_url: str | None,
    database_url: str | None,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
) -> None:
    """Serve the operator console: the same data as `fleet status`, `dlq` and `saga`.

    \b
    Pages:
      /           every queue: ready, unacked, consumers, rates, retry tiers,
                  dead letters (live); the workers and their replicas
      /failures   dead letters grouped by queue, reason and exception type;
                  filter, inspect, replay (also edited), discard, purge
      /sagas      recent sagas; one saga's timeline as a sequence diagram
      /topology   the topology graph and the plan against the live broker
      /audit      every action taken from the console (append-only)

    On the loopback with no token set, anyone on this machine may use it. Set
    FLEET_CONSOLE_TOKEN (acts) and FLEET_CONSOLE_READONLY_TOKEN (sees
    everything, changes nothing) to require a token; on any other address
    the console refuses to start without one. Every change is a confirmed
    POST with a CSRF token, and recorded in the audit log: in the database's
    fleet_console_audit table with --database-url, else in --audit-file.

    Browsing never consumes or reorders a queue: messages are read without
    being acknowledged and returned, in order, when the read ends.
    """
    from workers.console.app import Settings, make_app
    from workers.loader import import_contracts

    access = Access(
        os.environ.get("FLEET_CONSOLE_TOKEN") or None,
        os.environ.get("FLEET_CONSOLE_READONLY_TOKEN") or None,
    )
    try:
        check_bind(host, access)
    except ConsoleRefused as error:
        fail(str(error), EXIT_USAGE)
    topology = load(topology_file)
    import_contracts(topology)  # an edited body is checked against its contract
    settings = Settings(
        topology=topology,
        topology_file=topology_file,
        amqp_url=first_reachable(resolve_url(url, topology)),
        management_url=management_url,
        database_url=database_url,
        audit_file=Path(audit_file),
        access=access,
        browse_limit=browse_limit,
        prometheus_url=prometheus_url or None,
    )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"fleet console on http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    web.run_app(make_app(settings), host=host, port=port, print=None)
