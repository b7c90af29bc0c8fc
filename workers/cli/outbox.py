"""`fleet outbox`: run the relay, see what waits and what was parked, give parked rows back."""

from __future__ import annotations

import json
import os
from typing import Any

import click
import structlog

from topology import OutboxSpec, Topology, TopologyNotFound, load
from topology.names import OUTBOX_PROCESS
from workers.cli import EXIT_FAILURE, EXIT_USAGE, cli, fail
from workers.cli.options import (
    file_option,
    metrics_port_option,
    resolve_url,
    url_option,
    warn_unless_own_user,
)
from workers.outbox.schema import SCHEMA

log = structlog.get_logger("fleet.outbox")

EXAMPLES = """
\b
Examples:
  fleet outbox run --database-url postgresql://postgres@127.0.0.1/shop
  fleet outbox status
  fleet outbox requeue 1812 1813       # give parked rows back to the relay
  fleet outbox schema > migrations/0007_fleet_outbox.sql
"""

#: The outbox settings when the topology has no `outbox:` section.
DEFAULTS = OutboxSpec(publishes={"-": ["-"]})


def database_option(function: Any) -> Any:
    return click.option(
        "--database-url",
        default=None,
        help="The producers' PostgreSQL database, where fleet_outbox is (default: the "
        "variable the topology's outbox.database_env names, FLEET_DATABASE_URL unless set).",
    )(function)


@cli.group(epilog=EXAMPLES)
def outbox() -> None:
    """The transactional outbox: events producers recorded in their own transactions.

    A producer calls `Outbox.add(connection, event)` (workers.outbox) inside its
    database transaction; nothing reaches the broker unless it commits. The relay
    publishes the committed rows with publisher confirms, in commit order per key,
    and parks those the broker cannot route. Declare it under `outbox:` in the
    topology to have `fleet up` run it and `topology apply` give it a broker user.
    """


@outbox.command("run", epilog=EXAMPLES)
@database_option
@metrics_port_option
@file_option
@url_option
def run_command(
    database_url: str | None, metrics_port: int | None, topology_file: str | None, url: str | None
) -> None:
    """Publish committed outbox rows until SIGTERM or Ctrl-C.

    Woken by each commit (LISTEN/NOTIFY), and every `outbox.poll` at the latest.
    With several relays on one database, one publishes and the others stand by
    (a PostgreSQL advisory lock) and take over when it stops. While the broker is
    down the relay backs off without querying the database. Sent rows are pruned
    after `outbox.retention`. Serves Prometheus metrics on --metrics-port
    (fleet_outbox_depth, fleet_outbox_oldest_unsent_seconds, fleet_outbox_parked).
    """
    from workers.observability import exposition
    from workers.outbox.relay import Relay
    from workers.runtime.loop import run
    from workers.runtime.shutdown import Shutdown

    topology = _topology(topology_file)
    spec = topology.outbox if topology is not None and topology.outbox else DEFAULTS
    dsn = _database_url(database_url, spec)
    nodes = resolve_url(url, topology)
    if topology is not None:
        warn_unless_own_user(topology, OUTBOX_PROCESS, nodes)
    default_port = topology.metrics.port if topology is not None else 0
    port = default_port if metrics_port is None else metrics_port
    if port:
        exposition.serve(port)
    relay = Relay(
        dsn,
        nodes,
        name=spec.name,
        batch=spec.batch,
        poll=spec.poll.seconds,
        retention=spec.retention.timedelta,
    )
    shutdown = Shutdown()

    async def main() -> None:
        shutdown.install()
        await relay.run(shutdown.requested)

    log.info("outbox.starting", outbox=spec.name, batch=spec.batch, poll=str(spec.poll))
    run(main())
    stats = relay.stats
    log.info("outbox.stopped", outbox=spec.name, published=stats.published, parked=stats.parked)


@outbox.command("status", epilog=EXAMPLES)
@click.option("--show", type=click.IntRange(min=0), default=20, show_default=True,
              help="Parked rows to list.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@database_option
@file_option
def status_command(
    show: int, as_json: bool, database_url: str | None, topology_file: str | None
) -> None:
    """Rows waiting to be published, the oldest one's age, the active relay, and the
    parked rows with their reasons. Exits 1 when rows are parked."""
    from workers.cli.saga import with_database
    from workers.outbox import store

    topology = _topology(topology_file)
    spec = topology.outbox if topology is not None and topology.outbox else DEFAULTS
    state = with_database(_database_url(database_url, spec), _installed(store.status, show=show))
    if as_json:
        click.echo(json.dumps(_as_json(state), indent=2))
    else:
        for line, colour in render_status(spec.name, state):
            click.secho(line, fg=colour)
    if state.parked:
        raise SystemExit(EXIT_FAILURE)


@outbox.command("requeue", epilog=EXAMPLES)
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every parked row.")
@database_option
@file_option
def requeue_command(
    ids: tuple[int, ...], every: bool, database_url: str | None, topology_file: str | None
) -> None:
    """Give parked rows back to the relay: ID... or --all.

    Do it once what made the broker refuse them is fixed (a missing binding or
    exchange, a permission); they are published again in id order."""
    from workers.cli.saga import with_database
    from workers.outbox import store

    if bool(ids) == every:
        fail("name the parked rows' ids, or pass --all", EXIT_USAGE)
    topology = _topology(topology_file)
    spec = topology.outbox if topology is not None and topology.outbox else DEFAULTS
    count = with_database(
        _database_url(database_url, spec), _installed(store.requeue, None if every else ids)
    )
    click.echo(f"{count} parked row(s) given back to the relay.")


@outbox.command("schema", epilog=EXAMPLES)
def schema_command() -> None:
    """Print the SQL that creates fleet_outbox (idempotent), for a project's own
    migrations. The relay and `Outbox`'s `install` create it too."""
    click.echo(SCHEMA.strip())


def render_status(name: str, state: Any) -> list[tuple[str, str | None]]:
    """`fleet outbox status`'s lines with their colours (also used by `fleet status`)."""
    oldest = f"{state.oldest_seconds:.1f}s" if state.oldest_seconds is not None else "-"
    lines: list[tuple[str, str | None]] = [
        (
            f"outbox {name}: {state.unsent} unsent (oldest {oldest}), {state.parked} parked, "
            f"{state.sent} sent and kept",
            "red" if state.parked else None,
        ),
        (f"relay: {state.relay or 'none running'}", None if state.relay else "yellow"),
    ]
    for row in state.parked_rows:
        lines.append(
            (f"  parked #{row.id} {row.type} v{row.version} → {row.exchange} "
             f"{row.routing_key!r} key={row.key}: {row.reason}", "red")
        )  # fmt: skip
    if state.parked:
        lines.append(("fix the cause, then: fleet outbox requeue --all", None))
    return lines


def _installed(query: Any, *args: Any, **kwargs: Any) -> Any:
    """`query(connection, ...)` after making sure the table exists."""
    from workers.outbox.schema import install

    async def work(connection: Any) -> Any:
        await install(connection)
        return await query(connection, *args, **kwargs)

    return work


def _topology(topology_file: str | None) -> Topology | None:
    """The project's topology, or None in a directory without one."""
    try:
        return load(topology_file)
    except TopologyNotFound:
        return None


def _database_url(given: str | None, spec: OutboxSpec) -> str:
    url = given or os.environ.get(spec.database_env)
    if not url:
        fail(
            f"no database: pass --database-url or set {spec.database_env} "
            "(the producers' database, where fleet_outbox is)",
            EXIT_USAGE,
        )
    assert url is not None
    return url


def _as_json(state: Any) -> dict[str, Any]:
    return {
        "unsent": state.unsent,
        "parked": state.parked,
        "sent": state.sent,
        "oldest_seconds": state.oldest_seconds,
        "last_sent": state.last_sent.isoformat() if state.last_sent else None,
        "relay": state.relay,
        "parked_rows": [
            {
                **vars(r),
                "created_at": r.created_at.isoformat(),
                "parked_at": r.parked_at.isoformat(),
            }
            for r in state.parked_rows
        ],
    }
