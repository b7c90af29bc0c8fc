"""`fleet demo`: send orders to the running reference fleet, watch them, and total up."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import asyncpg
import click
import httpx

from fulfilment.demo import demo_orders, publish_orders
from fulfilment.workers import audit, reporting
from fulfilment.workers.clients import DEFAULT_GATEWAY_URL
from workers.cli import EXIT_FAILURE, fail
from workers.cli.options import resolve_url, url_option
from workers.cli.saga import database_url_option
from workers.runtime.loop import run

EXAMPLES = """
\b
Examples:
  make up                     # in another terminal: the fleet, its database, the stand-ins
  fleet demo
  fleet demo --orders 1000 --timeout 300
  FLEET_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/fleet fleet demo --orders 50
"""

#: How long to wait, after the last order ended, for compensations to settle
#: before the books are checked.
SETTLE_SECONDS = 10.0
#: How long to wait for the reporting projection to count this run's orders.
PROJECTION_SECONDS = 20.0


@click.command(epilog=EXAMPLES)
@click.option(
    "--orders",
    "count",
    type=click.IntRange(min=1, max=100_000),
    default=200,
    show_default=True,
    help="Orders to send.",
)
@click.option(
    "--timeout",
    "seconds",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Give up waiting for the sagas to end after this many seconds.",
)
@click.option("--seed", type=int, default=None, help="Fix the mix (default: varies per run).")
@database_url_option
@url_option
def demo(
    count: int, seconds: float, seed: int | None, database_url: str | None, url: str | None
) -> None:
    """Send N orders to the running reference fleet and report how they ended.

    The mix hits every path: stock-outs, declines, gateway errors, timeouts and
    broker-delayed retries (see `fleet standins run --help`). While the sagas
    run it shows counts by status every second; at the end a table: confirmed,
    cancelled by reason, dead-lettered, end-to-end latency p50/p95 (first
    event to terminal event, from the saga timeline), whether the books
    balance, and the daily-sales projection the `reporting` worker builds
    from the `order-events` stream, once it has counted this run's
    confirmations. Exits 1 if sagas are still pending at --timeout or the books do not
    balance. Start the fleet first: `make up` (or `fleet up` in examples/fulfilment).
    """
    if not database_url:
        fail("no database: pass --database-url or set FLEET_DATABASE_URL (as `make up` does)", 2)
        return
    ok = run(_demo(count, seconds, seed, database_url, resolve_url(url)))
    if not ok:
        sys.exit(EXIT_FAILURE)


async def _demo(count: int, seconds: float, seed: int | None, database_url: str, url: str) -> bool:
    try:
        db = await asyncpg.connect(database_url)
    except (OSError, asyncpg.PostgresError) as error:
        fail(f"cannot connect to the database: {error}")
        return False
    try:
        if not await db.fetchval("SELECT to_regclass('orders') IS NOT NULL"):
            fail(
                "no orders table in this database: is the reference fleet running? "
                "Start it with `make up` (or `fleet up` in examples/fulfilment)"
            )
        run_id = uuid.uuid4().hex[:6]
        orders = demo_orders(count, run=run_id, seed=seed)
        ids = [o.order_id for o in orders]
        click.echo(f"Sending {count} orders (demo-{run_id}-*) to {_safe(url)} …")
        started = time.monotonic()
        await publish_orders(url, orders)
        click.echo(f"Sent in {time.monotonic() - started:.1f}s. Following the sagas:")
        finished = await _follow(db, ids, started, seconds)
        summary = await audit.summarize(db, ids)
        problems = await _settled_books(db) if finished else []
        gateway = await _gateway_problems(db, ids)
        _report(summary, time.monotonic() - started, problems, gateway)
        projected = await _projection(db, ids, summary.confirmed)
        return finished and not problems and not gateway and projected is not False
    finally:
        await db.close()


async def _follow(db: Any, ids: list[str], started: float, seconds: float) -> bool:
    """Print counts by status every second until no order is pending; False at the timeout."""
    tty = sys.stdout.isatty()
    while True:
        counts = await audit.status_counts(db, ids)
        elapsed = time.monotonic() - started
        line = (
            f"  {elapsed:5.1f}s  confirmed {counts.get('confirmed', 0):>5}  "
            f"cancelled {counts.get('cancelled', 0):>5}  pending {counts.get('pending', 0):>5}"
        )
        click.echo(("\r" + line) if tty else line, nl=not tty)
        if not counts.get("pending"):
            if tty:
                click.echo()
            return True
        if elapsed > seconds:
            if tty:
                click.echo()
            click.secho(f"Gave up after {seconds:.0f}s with sagas still pending.", fg="red")
            return False
        await asyncio.sleep(1)


async def _settled_books(db: Any) -> list[str]:
    """The books' problems, given a few seconds for compensations still in flight."""
    deadline = time.monotonic() + SETTLE_SECONDS
    problems: list[str] = await audit.check_books(db)
    while problems and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        problems = await audit.check_books(db)
    return problems


async def _gateway_problems(db: Any, ids: list[str]) -> list[str] | None:
    """The gateway's charges against the ledger; None if the gateway does not answer."""
    base = os.environ.get("FLEET_GATEWAY_URL", DEFAULT_GATEWAY_URL).rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{base}/charges")
            response.raise_for_status()
            charges = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return audit.reconcile_gateway(charges, await audit.ledger_net(db), ids)


def _report(
    summary: audit.Summary, elapsed: float, problems: list[str], gateway: list[str] | None
) -> None:
    p50, p95 = summary.percentile(0.5), summary.percentile(0.95)
    rows: list[tuple[str, str, str | None]] = [
        ("orders", str(summary.orders), None),
        ("confirmed", str(summary.confirmed), "green"),
        ("cancelled", str(sum(summary.cancelled.values())), None),
    ]
    rows += [(f"  {reason}", str(n), None) for reason, n in sorted(summary.cancelled.items())]
    rows += [
        ("still pending", str(summary.pending), "red" if summary.pending else None),
        ("dead-lettered", str(summary.dead_lettered), "red" if summary.dead_lettered else None),
        ("retried via the broker", str(summary.retried), None),
        ("saga latency p50", f"{p50:.0f} ms" if p50 is not None else "-", None),
        ("saga latency p95", f"{p95:.0f} ms" if p95 is not None else "-", None),
        ("wall time", f"{elapsed:.1f} s", None),
    ]
    if problems:
        rows.append(("books", f"{len(problems)} problem(s)", "red"))
    else:
        rows.append(("books", "balanced: stock conserved, ledger = confirmed orders", "green"))
    if gateway is None:
        rows.append(("gateway", "not checked (no answer at FLEET_GATEWAY_URL)", None))
    elif gateway:
        rows.append(("gateway", f"{len(gateway)} problem(s)", "red"))
    else:
        rows.append(("gateway", "matches the ledger: no order charged twice", "green"))
    width = max(len(label) for label, _, _ in rows)
    click.echo()
    for label, value, colour in rows:
        click.echo(f"  {label.ljust(width)}  ", nl=False)
        click.secho(value, fg=colour)
    for problem in [*problems, *(gateway or [])][:10]:
        click.secho(f"  ! {problem}", fg="red")


async def _projection(db: Any, ids: list[str], confirmed: int) -> bool | None:
    """Wait for the reporting projection to count this run's confirmations, then
    print its daily sales. None when no reporting worker has run in this
    database; False when it did not catch up within PROJECTION_SECONDS."""
    if not await db.fetchval("SELECT to_regclass('reporting_daily_sales') IS NOT NULL"):
        click.echo("\n  projection  not shown (no reporting worker has run on this database)")
        return None
    deadline = time.monotonic() + PROJECTION_SECONDS
    while True:
        counted: int = await db.fetchval(
            "SELECT count(*) FROM reporting_orders "
            "WHERE order_id = ANY($1::text[]) AND status = 'confirmed'",
            ids,
        )
        if counted >= confirmed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    caught_up = counted >= confirmed
    click.echo()
    click.echo("  Daily sales (the reporting projection, from the order-events stream):")
    click.echo(f"    {'day':<10}  {'currency':<8}  {'orders':>7}  {'revenue':>14}")
    for day, currency, orders, revenue_cents in await reporting.daily_sales(db):
        click.echo(
            f"    {day.isoformat():<10}  {currency:<8}  {orders:>7}  {revenue_cents / 100:>14,.2f}"
        )
    if caught_up:
        click.secho(f"    counted this run's {confirmed} confirmed orders", fg="green")
    else:
        click.secho(
            f"    behind: {counted} of this run's {confirmed} confirmed orders counted "
            f"after {PROJECTION_SECONDS:.0f}s (is the reporting worker running?)",
            fg="red",
        )
    return caught_up


def _safe(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://…@{tail}" if at else url
