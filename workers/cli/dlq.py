"""`fleet dlq`: see what was parked and why, send it back, or drop it."""

from __future__ import annotations

import json
import sys

import click

from topology.management import Management
from topology.nodes import first_reachable
from workers import dlq as ops
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import management_url_option, resolve_url, url_option
from workers.runtime.loop import run

EXAMPLES = """
\b
Examples:
  fleet dlq list
  fleet dlq show inventory              # = inventory.dead
  fleet dlq show inventory.dead --limit 50 --json
  fleet dlq replay inventory --all
  fleet dlq replay inventory --id 8d1c0e4a-order-42
  fleet dlq purge inventory.retry.30s --yes
"""


@cli.group(epilog=EXAMPLES)
def dlq() -> None:
    """Dead-letter queues: list, show, replay, purge.

    Every queue has a <queue>.dead (messages that cannot be processed, with
    the reason in their headers) and <queue>.retry.<delay> queues (messages
    waiting for their next attempt). QUEUE may be the origin queue's name:
    `inventory` means `inventory.dead`.
    """


@dlq.command("list", epilog=EXAMPLES)
@url_option
@management_url_option
def list_command(url: str | None, management_url: str | None) -> None:
    """Every dead-letter and retry queue with its depth; dead letters are highlighted."""
    with Management.for_broker(_node(url), management_url) as management:
        queues = ops.parked_queues(management)
    queues = run(ops.exact_depths(_node(url), queues))
    if not queues:
        click.echo("No dead-letter or retry queues: has `fleet topology apply` run?")
        return
    width = max(len(q.name) for q in queues)
    origin = max(6, *(len(q.origin) for q in queues))
    click.echo(f"{'QUEUE'.ljust(width)}  KIND   {'ORIGIN'.ljust(origin)}  READY  UNACKED")
    for q in queues:
        line = (
            f"{q.name.ljust(width)}  {q.kind:<5}  {q.origin.ljust(origin)}  "
            f"{q.ready:>5}  {q.unacked:>7}"
        )
        click.secho(line, fg="red" if q.kind == "dead" and q.ready else None)
    dead = sum(q.ready for q in queues if q.kind == "dead")
    waiting = sum(q.ready for q in queues if q.kind == "retry")
    click.echo(f"\n{dead} dead-lettered, {waiting} waiting for a retry.")


@dlq.command("show", epilog=EXAMPLES)
@click.argument("queue")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Messages to show from the head of the queue.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@url_option
@management_url_option
def show_command(
    queue: str, limit: int, as_json: bool, url: str | None, management_url: str | None
) -> None:
    """Show parked messages with their reasons; they stay in the queue."""
    name = ops.resolve(queue)
    with Management.for_broker(_node(url), management_url) as management:
        messages = ops.show(management, name, limit)
    if messages is None:
        fail(f"no queue {name!r} in this vhost", EXIT_USAGE)
        return
    if as_json:
        for m in messages:
            click.echo(json.dumps({**vars(m), "body": m.body.decode("utf-8", "replace")}))
        return
    click.echo(f"{name}: showing {len(messages)} message(s) from the head, left in place.")
    for i, m in enumerate(messages, 1):
        click.echo(f"\n#{i} message_id={m.message_id} type={m.type}")
        reason = f"{m.reason}" + (f" ({m.error_type})" if m.error_type else "")
        click.secho(f"   reason:   {reason}", fg="red")
        if m.error:
            click.echo(f"   error:    {m.error}")
        click.echo(
            f"   attempts: {m.attempts}  worker: {m.worker}  "
            f"from: {m.original_exchange} / {m.original_routing_key}"
        )
        if m.first_failure:
            click.echo(f"   failed:   first {m.first_failure}, last {m.last_failure}")
        body = m.body.decode("utf-8", "replace")
        click.echo(f"   body:     {body[:300]}{'…' if len(body) > 300 else ''}")


@dlq.command("replay", epilog=EXAMPLES)
@click.argument("queue")
@click.option("--all", "replay_all", is_flag=True, help="Replay every message in the queue.")
@click.option("--id", "message_id", default=None, help="Replay only the message with this id.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Replay at most this many messages."
)
@url_option
def replay_command(
    queue: str, replay_all: bool, message_id: str | None, limit: int | None, url: str | None
) -> None:
    """Send parked messages back to their origin queue, attempts reset.

    Each message keeps its body, message_id and properties; fleet's failure
    headers are removed so it gets its full retry budget again. Publishing is
    confirmed before the parked copy is removed.
    """
    if replay_all == (message_id is not None):
        raise click.UsageError("choose what to replay: --all or --id MESSAGE_ID")
    name = ops.resolve(queue)
    result = run(ops.replay(_node(url), name, message_id=message_id, limit=limit))
    if message_id is not None and result.replayed == 0:
        fail(f"no message with id {message_id!r} in {name}", EXIT_USAGE)
    click.echo(
        f"Replayed {result.replayed} message(s) from {name} to {result.origin}; {result.left} left."
    )


@dlq.command("purge", epilog=EXAMPLES)
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@url_option
def purge_command(queue: str, yes: bool, url: str | None) -> None:
    """Delete every message in a dead-letter or retry queue. Asks first."""
    name = ops.resolve(queue)
    if not yes:
        if not sys.stdin.isatty():
            fail(f"refusing to purge {name} without confirmation: pass --yes", EXIT_USAGE)
        click.confirm(f"Delete every message in {name}? This cannot be undone", abort=True)
    purged = run(ops.purge(_node(url), name))
    click.echo(f"Purged {purged} message(s) from {name}.")


def _node(url: str | None) -> str:
    """One node of the broker: dead-letter queues are read and replayed through one."""
    return first_reachable(resolve_url(url))
