"""`fleet publish`: send one event, validated against its contract, with a confirm."""

from __future__ import annotations

import asyncio
import uuid

import click
import msgspec

from contracts import InvalidPayload, decode
from topology import load
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, resolve_url, url_option
from workers.loader import import_contracts
from workers.runtime.link import BrokerDown, BrokerLink
from workers.runtime.loop import run
from workers.runtime.outgoing import outgoing_event

EXAMPLES = """
\b
Examples:
  fleet publish orders order.placed --type OrderPlaced --json \\
    '{"order_id": "o-1", "customer_id": "c-1", "total_cents": 1200,
      "lines": [{"sku": "apple", "qty": 2, "unit_price_cents": 600}]}'
  fleet publish orders order.placed --type OrderPlaced --json @order.json
"""


@cli.command(epilog=EXAMPLES)
@click.argument("exchange")
@click.argument("routing_key")
@click.option(
    "--type", "type_name", required=True, help="The contract's wire name, e.g. OrderPlaced."
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The contract version.",
)
@click.option(
    "--json",
    "payload",
    required=True,
    help="The event's fields as a JSON object, or @FILE to read them from a file.",
)
@click.option("--message-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option(
    "--correlation-id",
    default=None,
    help="The saga this event belongs to (default: the message id: a new saga).",
)
@file_option
@url_option
def publish(
    exchange: str,
    routing_key: str,
    type_name: str,
    version: int,
    payload: str,
    message_id: str | None,
    correlation_id: str | None,
    topology_file: str | None,
    url: str | None,
) -> None:
    """Publish one event to EXCHANGE with ROUTING_KEY.

    The JSON is validated against the contract first; the publish is mandatory
    and waits for the broker's confirm, so an event no queue receives is an
    error, not a silent loss. Given several nodes (a cluster), it uses the
    first that answers and, if that one goes away before the confirm, sends
    the event again through another. Prints the message id.
    """
    topology = load(topology_file)
    event_type = import_contracts(topology).lookup(type_name, version)
    body = _read_payload(payload)
    try:
        event = decode(event_type, body)
    except InvalidPayload as exc:
        fail(str(exc), EXIT_USAGE)
    message_id = message_id or uuid.uuid4().hex

    message = outgoing_event(
        event,
        exchange=exchange,
        message_id=message_id,
        correlation_id=correlation_id or message_id,
        app_id="fleet.cli",
    )
    # The routing key given on the command line wins over the contract's.
    message = msgspec.structs.replace(message, routing_key=routing_key)
    nodes = resolve_url(url, topology)

    async def send() -> None:
        link = BrokerLink(nodes, name="fleet publish", max_backoff=1.0)
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        try:
            await link.publish(message)
        except BrokerDown as exc:
            if link.refused is not None:  # a login or TLS mistake: retrying will not help
                fail(str(link.refused))
            fail(
                f"{exc}: the event may not have reached the broker; publish it again "
                f"with --message-id {message_id} (consumers drop the duplicate)"
            )
        finally:
            stop.set()
            await keeper

    run(send())
    click.echo(message_id)


def _read_payload(payload: str) -> bytes:
    if payload.startswith("@"):
        try:
            with open(payload[1:], "rb") as handle:
                return handle.read()
        except OSError as exc:
            fail(f"cannot read {payload[1:]}: {exc.strerror}", EXIT_USAGE)
    return payload.encode()
