"""`fleet stream`: read a stream's events, and see named consumers' offsets and lag."""

from __future__ import annotations

import click

from topology import load
from topology.model import Topology
from topology.streams import partition_names
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, resolve_url, url_option
from workers.runtime.loop import run
from workers.streams.connect import STREAM_PORT, StreamEndpoint, StreamUnavailable
from workers.streams.offsets import offsets as read_offsets
from workers.streams.tail import StreamEvent, parse_start, tail

EXAMPLES = """
\b
Examples:
  fleet stream tail order-events                      # new events, as they arrive
  fleet stream tail order-events --from first --limit 20
  fleet stream tail order-events --from 2h --filter OrderPlaced
  fleet stream tail order-events --from 1500 --idle 5
  fleet stream offsets
  fleet stream offsets order-events --consumer audit --consumer billing
"""

_port_option = click.option(
    "--stream-port",
    type=click.IntRange(1, 65535),
    default=STREAM_PORT,
    show_default=True,
    help="The stream protocol's port on the broker's host (the rabbitmq_stream plugin).",
)


@cli.group(epilog=EXAMPLES)
def stream() -> None:
    """RabbitMQ streams: read events from an offset, see consumers' offsets and lag.

    Both speak the stream protocol (the rabbitmq_stream plugin, port 5552), as the
    --url's user on its vhost. Neither stores an offset: reading a stream here
    never moves a consumer.
    """


@stream.command("tail", epilog=EXAMPLES)
@click.argument("name", metavar="STREAM")
@click.option(
    "--from",
    "start",
    default="next",
    show_default=True,
    help="first, last (the last chunk), next (new events only), an offset, "
    "or how far back (30m, 2h, 1d).",
)
@click.option("--filter", "event_type", default=None, help="Only events of this type.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Stop after this many events."
)
@click.option(
    "--idle",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this many seconds without a message (default: wait for more).",
)
@url_option
@_port_option
def tail_command(
    name: str,
    start: str,
    event_type: str | None,
    limit: int | None,
    idle: float | None,
    url: str | None,
    stream_port: int,
) -> None:
    """Print a stream's events (offset, time, type, message id, body) as they arrive."""
    try:
        spec = parse_start(start)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--from'") from None
    endpoint = StreamEndpoint.from_amqp_url(resolve_url(url), stream_port)
    try:
        run(tail(endpoint, name, spec, _show, event_type=event_type, limit=limit, idle=idle))
    except StreamUnavailable as exc:
        fail(str(exc))


@stream.command("offsets", epilog=EXAMPLES)
@click.argument("name", metavar="[STREAM]", required=False)
@click.option(
    "--consumer",
    "consumers",
    multiple=True,
    help="A consumer reference to ask about (repeatable), besides the topology's.",
)
@file_option
@url_option
@_port_option
def offsets_command(
    name: str | None,
    consumers: tuple[str, ...],
    topology_file: str | None,
    url: str | None,
    stream_port: int,
) -> None:
    """Each stream's last offset, and each named consumer's stored offset and lag.

    The streams are STREAM, or every stream of the topology file (each partition
    of a super stream). The consumers are the --consumer names and the workers the
    topology has on the stream (reference = worker name): the stream protocol has no
    way to list who stored an offset, so a consumer named nowhere is not shown.
    """
    topology = load(topology_file) if topology_file is not None or name is None else None
    streams = _streams(topology, name, list(consumers))
    if not streams:
        fail(
            "no streams: the topology declares none; name one: fleet stream offsets STREAM",
            EXIT_USAGE,
        )
    endpoint = StreamEndpoint.from_amqp_url(resolve_url(url, topology), stream_port)
    try:
        found = run(read_offsets(endpoint, streams))
    except StreamUnavailable as exc:
        fail(str(exc))
    for entry in found:
        end = "empty" if entry.end is None else f"last offset {entry.end}"
        click.echo(f"{entry.stream}: {end}")
        if not entry.consumers:
            click.echo("  no named consumers (pass --consumer NAME)")
        for c in entry.consumers:
            if c.offset is None:
                click.echo(f"  {c.name}: no stored offset")
            else:
                click.echo(f"  {c.name}: offset {c.offset}, lag {c.lag}")


def _streams(topology: Topology | None, name: str | None, extra: list[str]) -> dict[str, list[str]]:
    """Stream name → the consumer references to query on it."""
    declared: dict[str, list[str]] = {}
    if topology is not None:
        for queue_name, queue in topology.queues.items():
            if queue.type != "stream":
                continue
            workers = [w for w, spec in topology.workers.items() if spec.queue == queue_name]
            parts = (
                [queue_name]
                if queue.partitions is None
                else partition_names(queue_name, queue.partitions)
            )
            for part in parts:
                declared[part] = workers
    chosen = [name] if name is not None else list(declared)
    return {s: list(dict.fromkeys([*declared.get(s, []), *extra])) for s in chosen}


def _show(event: StreamEvent) -> None:
    body = event.body.decode("utf-8", "replace")
    click.echo(
        f"{event.offset}  {event.timestamp.isoformat(timespec='milliseconds')}  "
        f"{event.type or '-'}  {event.message_id or '-'}  {body}"
    )
