"""`fleet status`: a live table of every managed queue; exit 1 on dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import asyncpg
import click

from topology import Topology, load
from topology.management import Management
from topology.nodes import first_reachable
from workers.cli import EXIT_FAILURE, EXIT_OK, cli
from workers.cli.options import file_option, management_url_option, resolve_url, url_option
from workers.runtime.connection import connect
from workers.runtime.loop import run
from workers.status import Depth, QueueStatus, Snapshot, snapshot

EXAMPLES = """
\b
Examples:
  fleet status
  fleet status --watch --interval 5
  fleet status > /dev/null || echo "dead letters: see fleet dlq list"
"""

HEADER = ("QUEUE", "KIND", "READY", "UNACKED", "CONSUMERS", "IN/s", "OUT/s", "RETRY", "DEAD")


@cli.command(epilog=EXAMPLES)
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@file_option
@url_option
@management_url_option
def status(
    watch: bool,
    interval: float,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
) -> None:
    """Every queue of the topology: ready, unacked, consumers, rates in and out,
    retry-tier and dead-letter depths; dead letters in red.

    With an `outbox:` in the topology and its database's URL in the environment
    (outbox.database_env, FLEET_DATABASE_URL by default), it also shows the
    outbox's unsent rows, the oldest one's age, its active relay and parked rows.

    Where a worker declares a circuit `breaker`, a BREAKER column says, per queue,
    closed, or open for the worker processes that stopped consuming it.

    Exits 1 when any dead-letter queue holds messages (or a managed queue is
    missing from the broker, or outbox rows are parked), 0 otherwise, so it
    serves as a health check.
    Ready and consumer counts are exact; unacked counts and rates come from the
    management API and trail by its statistics interval (5 s by default).
    """
    topology = load(topology_file)
    nodes = resolve_url(url, topology)
    latest: list[Snapshot] = []  # the last state read, for the exit code after Ctrl-C

    async def main() -> None:
        connection = await connect(nodes, name="fleet status")
        try:
            with Management.for_broker(first_reachable(nodes), management_url) as management:
                latest[:] = [await snapshot(topology, connection, management)]
                while watch:
                    click.clear()
                    click.echo(time.strftime("%H:%M:%S  ") + f"every {interval:g}s, Ctrl-C stops")
                    show(latest[-1])
                    await asyncio.sleep(interval)
                    latest[:] = [await snapshot(topology, connection, management)]
        finally:
            await connection.close()

    with contextlib.suppress(KeyboardInterrupt):
        run(main())
    if not latest:  # interrupted before the first read
        raise SystemExit(EXIT_FAILURE)
    if not watch:
        show(latest[-1])
    healthy = latest[-1].healthy and _outbox_healthy(topology)
    raise SystemExit(EXIT_OK if healthy else EXIT_FAILURE)


def _outbox_healthy(topology: Topology) -> bool:
    """Show the outbox's state when there is one and its database is named; False when
    rows are parked."""
    spec = topology.outbox
    url = os.environ.get(spec.database_env) if spec is not None else None
    if spec is None or not url:
        return True
    from workers.cli.outbox import render_status
    from workers.outbox import schema, store

    async def read() -> store.Status:
        connection = await asyncpg.connect(url, timeout=10)
        try:
            await schema.install(connection)
            return await store.status(connection, show=5)
        finally:
            await connection.close()

    try:
        state = run(read())
    except (OSError, asyncpg.PostgresError) as exc:
        click.secho(f"outbox {spec.name}: cannot read its database: {exc}", fg="yellow")
        return True
    click.echo()
    for line, colour in render_status(spec.name, state):
        click.secho(line, fg=colour)
    return state.parked == 0


def show(shot: Snapshot) -> None:
    for line, colour in render(shot):
        click.secho(line, fg=colour, bold=colour == "red")


def render(shot: Snapshot) -> list[tuple[str, str | None]]:
    """The table's lines with their colours: red for a row with dead letters,
    yellow for one whose queues are missing."""
    # The BREAKER column only where a worker declares a circuit breaker.
    guarded = any(row.breakers for row in shot.rows)
    header = (*HEADER, "BREAKER") if guarded else HEADER
    rows = [header, *(_cells(row, guarded) for row in shot.rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines: list[tuple[str, str | None]] = [(_join(header, widths), None)]
    for status_row, cells in zip(shot.rows, rows[1:], strict=True):
        colour = "red" if status_row.dead_letters else "yellow" if status_row.missing else None
        lines.append((_join(cells, widths), colour))
    waiting = sum(d.ready for row in shot.rows for _, d in row.retries)
    lines.append(("", None))
    lines.append((f"{shot.dead_letters} dead-lettered, {waiting} waiting for a retry.", None))
    for row in shot.rows:
        if row.dead_letters:
            lines.append(
                (f"{row.dead_letters} in {row.dead.name if row.dead else '?'}: "
                 f"fleet dlq show {row.queue.name}", "red")
            )  # fmt: skip
    missing = shot.missing
    if missing:
        names = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        lines.append(
            (f"{len(missing)} managed queue(s) not on the broker ({names}): "
             "run `fleet topology apply`", "yellow")
        )  # fmt: skip
    return lines


def _cells(row: QueueStatus, guarded: bool = False) -> tuple[str, ...]:
    q = row.queue
    if q.missing:
        counts = ("-", "-", "-", "-", "-")
    else:
        counts = (
            str(q.ready),
            str(q.unacked),
            str(q.consumers),
            _rate(q.rate_in),
            _rate(q.rate_out),
        )
    retries = " ".join(f"{label}:{_count(d)}" for label, d in row.retries) or "-"
    dead = "-" if row.dead is None else _count(row.dead)
    if not guarded:
        return (q.name, row.kind, *counts, retries, dead)
    breaker = ", ".join(
        str(b) if len(row.breakers) == 1 else f"{b.worker}:{b}" for b in row.breakers
    )
    return (q.name, row.kind, *counts, retries, dead, breaker or "-")


def _count(depth: Depth) -> str:
    return "missing" if depth.missing else str(depth.ready + depth.unacked)


def _rate(value: float) -> str:
    return f"{value:.1f}"


def _join(cells: tuple[str, ...], widths: list[int]) -> str:
    # Names and words left, numbers right.
    out = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        out.append(cell.ljust(width) if i in (0, 1, 7, 9) else cell.rjust(width))
    return "  ".join(out).rstrip()
