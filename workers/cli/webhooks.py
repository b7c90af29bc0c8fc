"""`fleet webhooks`: run the outbound webhook dispatcher, list subscriptions, show deliveries."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import structlog

from topology import load
from topology.names import WEBHOOKS_PROCESS
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, resolve_url, url_option, warn_unless_own_user
from workers.runtime.loop import run
from workers.runtime.shutdown import Shutdown
from workers.webhooks.errors import WebhookConfigError
from workers.webhooks.records import DeliveryRecord, NoRecords, PostgresRecords, Records
from workers.webhooks.subscription import resolve

log = structlog.get_logger("fleet.webhooks")

EXAMPLES = """
\b
Examples:
  fleet webhooks run                          # every subscription in the topology
  fleet webhooks run notifications --database-url postgresql://postgres@127.0.0.1/fleet
  fleet webhooks list
  fleet webhooks deliveries --failed
  fleet webhooks deliveries --message-id 6409fbe3fb4a… --json
"""

_COLOURS = {"delivered": "green", "retry": "yellow", "dead": "red"}


@cli.group(epilog=EXAMPLES)
def webhooks() -> None:
    """Signed outbound webhooks: subscriptions declared under `webhooks:` in the topology.

    Each event a subscription takes is POSTed to its URL with Standard Webhooks
    headers, retried through broker delay tiers, and dead-lettered when it
    cannot be delivered.
    """


@webhooks.command("run", epilog=EXAMPLES)
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="PostgreSQL URL (env FLEET_DATABASE_URL): every attempt is recorded in "
    "fleet_webhook_deliveries. Without it, attempts are only logged.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to let in-flight deliveries finish on SIGTERM.",
)
@file_option
@url_option
def run_command(
    names: tuple[str, ...],
    database_url: str | None,
    drain_timeout: float,
    topology_file: str | None,
    url: str | None,
) -> None:
    """Deliver the subscriptions NAME... (default: all) until SIGTERM or Ctrl-C.

    Consumes each subscription's queue `webhook.<name>` with manual acks; an
    answer 2xx acks, 5xx/408/429/timeouts go to the next delay tier (a
    Retry-After picks one at least that long), other statuses and internal
    destinations (SSRF guard) are dead-lettered with the reason.
    """
    from workers.webhooks.service import run_dispatchers

    topology = load(topology_file)
    if not topology.webhooks:
        fail("the topology declares no webhook subscriptions (add webhooks:)", EXIT_USAGE)
    try:
        subscriptions = resolve(topology, names)
    except WebhookConfigError as exc:
        fail(str(exc), EXIT_USAGE)
        return
    records: Records
    if database_url:
        records = PostgresRecords(database_url, pool_size=min(10, 2 + len(subscriptions)))
    else:
        records = NoRecords()
    log.info(
        "webhooks.records",
        kind=type(records).__name__,
        recorded="in fleet_webhook_deliveries" if database_url else "off (no --database-url)",
    )
    nodes = resolve_url(url, topology)
    warn_unless_own_user(topology, WEBHOOKS_PROCESS, nodes)
    shutdown = Shutdown()

    async def main() -> None:
        shutdown.install()
        await run_dispatchers(
            subscriptions, nodes, records=records, shutdown=shutdown, drain_timeout=drain_timeout
        )

    run(main())


@webhooks.command("list", epilog=EXAMPLES)
@file_option
def list_command(topology_file: str | None) -> None:
    """List the subscriptions: URL, events, retry delays and what is allowed."""
    topology = load(topology_file)
    if not topology.webhooks:
        click.echo("No webhook subscriptions in the topology.")
        return
    rows = [("SUBSCRIPTION", "URL", "EVENTS", "RETRY DELAYS", "ALLOWS")]
    for name, spec in topology.webhooks.items():
        events = ", ".join(
            e.contract + (f" v{e.version}" if e.version != 1 else "") for e in spec.subscribed()
        )
        allows = "private" if spec.allow_private else ", ".join(spec.allow_hosts) or "-"
        delays = " ".join(str(d) for d in spec.retry.delays) or "-"
        rows.append((name, spec.url, events, delays, allows))
    _table(rows)


@webhooks.command("deliveries", epilog=EXAMPLES)
@click.option("--subscription", "-s", default=None, help="Only this subscription's attempts.")
@click.option("--message-id", default=None, help="Only the attempts of this message.")
@click.option("--failed", is_flag=True, help="Only attempts that were not delivered.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="PostgreSQL URL the dispatcher records to (env FLEET_DATABASE_URL).",
)
def deliveries_command(
    subscription: str | None,
    message_id: str | None,
    failed: bool,
    limit: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Show recorded delivery attempts, newest first: status or error, latency, outcome.

    Outcomes: delivered (2xx), retry (sent to a delay tier), dead (dead-lettered).
    """
    from workers.cli.saga import with_database
    from workers.webhooks.records import recent

    async def read(db: Any) -> list[DeliveryRecord]:
        return await recent(
            db, subscription=subscription, message_id=message_id, failed=failed, limit=limit
        )

    try:
        rows = with_database(database_url, read)
    except LookupError as exc:
        fail(str(exc))
        return
    if as_json:
        click.echo(
            json.dumps(
                [{**vars(r), "at": r.at.isoformat() if r.at else None} for r in rows], indent=2
            )
        )
        return
    if not rows:
        click.echo("No delivery attempts recorded" + (" that failed." if failed else "."))
        return
    table = [
        ("AT", "SUBSCRIPTION", "MESSAGE", "TYPE", "#", "STATUS", "LATENCY", "OUTCOME", "ERROR")
    ]
    for r in rows:
        at = r.at.astimezone() if r.at else None
        table.append(
            (
                f"{at:%H:%M:%S}.{at.microsecond // 1000:03d}" if at else "-",
                r.subscription,
                r.message_id,
                r.event_type,
                str(r.attempt),
                str(r.status) if r.status is not None else "-",
                f"{r.latency_ms:.0f}ms",
                r.outcome + (f" → {r.retry_queue}" if r.retry_queue else ""),
                (r.error or "")[:80],
            )
        )
    _table(table, colours=[_COLOURS.get(r.outcome) for r in rows])


def _table(rows: Sequence[tuple[str, ...]], colours: Sequence[str | None] | None = None) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        colour = colours[i - 1] if colours and i else None
        click.secho(line.rstrip(), fg=colour)
