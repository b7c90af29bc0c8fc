"""`fleet stream`: read a stream's events, see named consumers' offsets and lag, and
replay a window of a stream into a queue."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from topology import load
from topology.model import Topology
from topology.rate import Rate
from topology.streams import partition_names
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import file_option, management_url_option, resolve_url, url_option
from workers.runtime.loop import run
from workers.streams.connect import STREAM_PORT, StreamEndpoint, StreamUnavailable
from workers.streams.offsets import offsets as read_offsets
from workers.streams.replay import Replayed, parse_time, replay
from workers.streams.tail import StreamEvent, parse_start, tail

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

EXAMPLES = """
\b
Examples:
  fleet stream tail order-events                      # new events, as they arrive
  fleet stream tail order-events --from first --limit 20
  fleet stream tail order-events --from 2h --filter OrderPlaced
  fleet stream tail order-events --from 1500 --idle 5
  fleet stream offsets
  fleet stream offsets order-events --consumer audit --consumer billing
  fleet stream replay order-events --since 2h --into audit --dry-run
  fleet stream replay order-events --since 2026-05-01T12:00Z --until 2026-05-01T13:00Z \\
      --type OrderPlaced --into billing --rate 500/s
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
    """RabbitMQ streams: read events from an offset, see consumers' offsets and lag,
    replay a time window into a queue.

    They speak the stream protocol (the rabbitmq_stream plugin, port 5552), as the
    --url's user on its vhost. None stores an offset: reading a stream here never
    moves a consumer.
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


@stream.command("replay", epilog=EXAMPLES)
@click.argument("name", metavar="STREAM")
@click.option(
    "--since",
    required=True,
    metavar="TIME",
    help="From the first event written at or after this time: ISO 8601 "
    "(UTC unless it says otherwise) or how far back (30m, 2h, 1d).",
)
@click.option(
    "--until",
    default=None,
    metavar="TIME",
    help="Up to the last event written at or before this time (same forms; "
    "default: the stream's end when the replay starts).",
)
@click.option(
    "--type", "event_type", metavar="NAME", default=None, help="Only events of this type."
)
@click.option(
    "--into",
    "queue",
    metavar="QUEUE",
    required=True,
    help="The queue to publish into (default exchange).",
)
@click.option(
    "--rate",
    metavar="N/s",
    default=None,
    help="Publish at most this fast: 500/s, 6000/m (default: no limit).",
)
@click.option(
    "--dry-run", is_flag=True, help="Count what would be replayed, per type; publish nothing."
)
@url_option
@_port_option
@management_url_option
def replay_command(
    name: str,
    since: str,
    until: str | None,
    event_type: str | None,
    queue: str,
    rate: str | None,
    dry_run: bool,
    url: str | None,
    stream_port: int,
    management_url: str | None,
) -> None:
    """Publish a stream's events from a time window into a queue, as they were.

    Each event keeps its message id, correlation id, type, headers and body, so a
    worker's inbox skips those it already handled. Publishing is confirmed and
    mandatory. A super stream's partitions are replayed one after another: each
    partition's order (so each key's) is kept, not the order across partitions.
    Nothing is stored: no consumer's offset moves.
    """
    since_ms = _time(since, "--since")
    until_ms = None if until is None else _time(until, "--until")
    if until_ms is not None and until_ms < since_ms:
        raise click.BadParameter(f"{until!r} is before --since {since!r}", param_hint="'--until'")
    try:
        per_second = None if rate is None else Rate.parse(rate).per_second
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--rate'") from None
    amqp_url = resolve_url(url)
    endpoint = StreamEndpoint.from_amqp_url(amqp_url, stream_port)
    bar = _Bar(f"{'reading' if dry_run else 'replaying'} {name} into {queue}")
    try:
        done = run(
            replay(
                endpoint,
                amqp_url,
                name,
                queue,
                since_ms=since_ms,
                until_ms=until_ms,
                event_type=event_type,
                rate=per_second,
                dry_run=dry_run,
                management_url=management_url,
                progress=bar,
            )
        )
    except StreamUnavailable as exc:
        fail(str(exc))
    finally:
        bar.close()
    if dry_run:
        for kind, count in sorted(done.types.items(), key=lambda item: (-item[1], item[0])):
            click.echo(f"{kind or '(no type)'}  {count:,}")
    click.echo(_summary(done, name, queue, dry_run, event_type is not None))


def _time(text: str, option: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None


class _Bar:
    """click's progress bar on stderr, drawn once replay knows how much it will read
    (on a terminal only; elsewhere click prints the label once)."""

    def __init__(self, label: str):
        self._label = label
        self._bar: ProgressBar[int] | None = None

    def __call__(self, read: int, total: int) -> None:
        if self._bar is None:
            bar: ProgressBar[int] = click.progressbar(
                length=max(total, 1),
                label=self._label,
                file=sys.stderr,
                show_pos=True,
            )
            bar.render_progress()
            self._bar = bar
        self._bar.update(read - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.render_finish()


def _summary(done: Replayed, name: str, queue: str, dry_run: bool, filtered: bool) -> str:
    """``replayed 1,234 events into orders (skipped 56 of other types) in 2.1 s``."""
    events = f"{done.replayed:,} event{'' if done.replayed == 1 else 's'}"
    source = f" from {len(done.streams)} partitions of {name}" if len(done.streams) > 1 else ""
    skipped = f" (skipped {done.skipped:,} of other types)" if filtered else ""
    if dry_run:
        return f"would replay {events}{source} into {queue}{skipped} (read in {done.seconds:.1f} s)"
    return f"replayed {events}{source} into {queue}{skipped} in {done.seconds:.1f} s"


def _streams(topology: Topology | None, name: str | None, extra: list[str]) -> dict[str, list[str]]:
    """Stream name → the consumer references to query on it."""
    declared: dict[str, list[str]] = {}
    if topology is not None:
        for queue_name, queue in topology.queues.items():
            if queue.type != "stream":
                continue
            workers = [
                spec.consumer or w  # the worker's consumer name, if it has one
                for w, spec in topology.workers.items()
                if spec.queue == queue_name
            ]
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
