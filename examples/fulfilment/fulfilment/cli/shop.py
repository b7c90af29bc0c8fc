"""`fleet shop run`: the reference fleet's web shop, placing orders through the outbox."""

from __future__ import annotations

import click
from aiohttp import web

from workers.cli import EXIT_USAGE, fail

EXAMPLES = """
\b
Examples:
  FLEET_DATABASE_URL=postgresql://postgres@127.0.0.1/fleet fleet shop run
  curl -i localhost:8081/orders -H 'Content-Type: application/json' \\
    -d '{"customer_id": "c-1", "lines": [{"sku": "apple", "qty": 2, "unit_price_cents": 120}]}'
"""


@click.group(epilog=EXAMPLES)
def shop() -> None:
    """A web shop that places orders into the reference saga through the outbox.

    It writes its own shop_orders row and records OrderPlaced in the same
    PostgreSQL transaction; `fleet outbox run` (started by `fleet up`)
    publishes it. The shop never connects to the broker.
    """


@shop.command("run", epilog=EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="The shop's database, where the relay finds fleet_outbox (env FLEET_DATABASE_URL).",
)
def run_command(host: str, port: int, database_url: str | None) -> None:
    """Serve the shop until Ctrl-C."""
    from fulfilment.shop import make_app

    if not database_url:
        fail(
            "the shop needs its database: pass --database-url or set FLEET_DATABASE_URL", EXIT_USAGE
        )
    web.run_app(make_app(database_url), host=host, port=port, print=None)
