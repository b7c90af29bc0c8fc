"""`fleet saga`: the timeline of a business transaction, and a summary of recent ones."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import click

from topology import Duration, load
from workers import saga as timeline
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option
from workers.runtime.loop import run

T = TypeVar("T")

EXAMPLES = """
\b
Examples:
  fleet saga show o-42                       # a correlation id, or a message id
  fleet saga list
  fleet saga list --status cancelled --since 10m   # statuses: the topology's `sagas:`
  fleet saga list --json | jq -r '.[] | select(.dead_lettered > 0) | .correlation_id'
"""

_COLOURS = {"processed": "green", "retried": "yellow", "dead-lettered": "red"}


def database_url_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--database-url`` / FLEET_DATABASE_URL: where the timeline and the workers' tables are."""
    return click.option(
        "--database-url",
        envvar="FLEET_DATABASE_URL",
        default=None,
        help="PostgreSQL URL of the fleet's database (env FLEET_DATABASE_URL).",
    )(function)


def with_database(database_url: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(connection)` on the database; one line and an exit code on failure."""
    if not database_url:
        fail("no database: pass --database-url or set FLEET_DATABASE_URL", EXIT_USAGE)

    async def main() -> T:
        try:
            connection = await asyncpg.connect(database_url)
        except (OSError, asyncpg.PostgresError) as error:
            fail(f"cannot connect to the database: {error}")
        try:
            return await work(connection)
        finally:
            await connection.close()

    coroutine: Coroutine[Any, Any, T] = main()
    try:
        return run(coroutine)
    except timeline.NoTimeline:
        fail(
            "this database has no saga timeline (fleet_events): "
            "run the workers with --database-url first"
        )
        raise  # unreachable: fail exits


@cli.group(epilog=EXAMPLES)
def saga() -> None:
    """Saga timelines: every event of a business transaction, in causal order.

    Workers with a database record each event they handle (processed, retried
    or dead-lettered) with its correlation and causation ids.
    """


@saga.command("show", epilog=EXAMPLES)
@click.argument("saga_id")
@database_url_option
def show_command(saga_id: str, database_url: str | None) -> None:
    """Print the causation tree of SAGA_ID with timings, workers and outcomes.

    SAGA_ID is a correlation id, or the id of one of the saga's messages.
    Times are milliseconds from the saga's first recorded event.
    """

    async def read(db: Any) -> tuple[str, list[timeline.Step]] | None:
        correlation_id = await timeline.resolve(db, saga_id)
        if correlation_id is None:
            return None
        return correlation_id, await timeline.timeline(db, correlation_id)

    found = with_database(database_url, read)
    if found is None:
        fail(
            f"no saga {saga_id!r} in the timeline (neither a correlation id nor a message id)",
            EXIT_USAGE,
        )
        return
    correlation_id, steps = found
    span = round((steps[-1].at - steps[0].at).total_seconds() * 1000)
    click.secho(f"saga {correlation_id}", bold=True)
    first = steps[0].at.astimezone()
    click.echo(
        f"{len(steps)} event(s) over {span}ms, "
        f"from {first:%Y-%m-%d %H:%M:%S}.{first.microsecond // 1000:03d}\n"
    )
    for line, outcome in timeline.render(steps):
        click.secho(line, fg=_COLOURS.get(outcome or ""))


@saga.command("list", epilog=EXAMPLES)
@click.option(
    "--status",
    default=None,
    help="Only sagas with this status: `pending`, or one the topology's `sagas:` "
    "gives an ending event (the reference fleet's: confirmed, cancelled).",
)
@click.option(
    "--since",
    default="1h",
    show_default=True,
    help="Sagas with events in this window: 30s, 10m, 2h, 1d.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@database_url_option
@file_option
def list_command(
    status: str | None,
    since: str,
    limit: int,
    as_json: bool,
    database_url: str | None,
    topology_file: str | None,
) -> None:
    """Summarise recent sagas: status, events, retries, dead letters and duration.

    What starts a saga and what ends it, with which status, is the topology's
    `sagas:` section. The duration runs from the first recorded event to the
    one that ended the saga; a saga still running shows its age so far.
    """
    try:
        window = Duration.parse(since).timedelta
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    declared = load(topology_file).sagas if topology_file is not None else {}

    async def read(db: Any) -> list[timeline.SagaSummary]:
        return await timeline.sagas(db, declared=declared, since=window, status=status, limit=limit)

    try:
        rows = with_database(database_url, read)
    except LookupError as error:
        fail(str(error), EXIT_USAGE)
        return
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **vars(r),
                        "started": r.started.isoformat(),
                        "last": r.last.isoformat(),
                        "ended": r.ended.isoformat() if r.ended else None,
                        "duration_ms": round(r.duration_ms),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        click.echo(f"No sagas with events in the last {since}.")
        return
    table = [("STARTED", "SAGA", "KIND", "STATUS", "EVENTS", "RETRIED", "DEAD", "DURATION")]
    for r in rows:
        state = (r.status or "-") + (f" ({r.ending})" if r.ending else "")
        duration = f"{round(r.duration_ms)}ms" + ("" if r.ended else " so far")
        table.append(
            (
                f"{r.started.astimezone():%H:%M:%S}",
                r.correlation_id,
                r.saga or "-",
                state,
                str(r.events),
                str(r.retried),
                str(r.dead_lettered),
                duration,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        colour = "red" if i and rows[i - 1].dead_lettered else None
        click.secho(line.rstrip(), fg=colour)
    click.echo(
        f"\n{len(rows)} saga(s) in the last {since}"
        + (f", status {status}" if status else "")
        + "."
    )
