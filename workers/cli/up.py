"""`fleet up`: apply the topology and run every worker with its replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import click

from topology import load
from topology.apply import apply
from workers.cli import cli
from workers.cli.options import file_option, management_url_option, url_option
from workers.runtime.loop import run
from workers.supervisor import Child, Supervisor, worker_command

EXAMPLES = """
\b
Examples:
  fleet up
  fleet up --only inventory --only payments
  fleet up --file my-fleet.yaml --url amqp://user:pw@rabbit:5672/prod
"""


@cli.command(epilog=EXAMPLES)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="WORKER",
    help="Run only these workers (repeatable); default: all of them.",
)
@click.option("--no-apply", is_flag=True, help="Do not apply the topology first.")
@file_option
@url_option
@management_url_option
@click.pass_context
def up(
    ctx: click.Context,
    only: tuple[str, ...],
    no_apply: bool,
    topology_file: str | None,
    url: str,
    management_url: str | None,
) -> None:
    """Apply the topology, then run every worker with its replica count.

    Each replica is its own `fleet worker run` process. A process that exits
    unexpectedly is restarted with backoff; Ctrl-C or SIGTERM stops them all
    gracefully (in-flight work finishes, the rest is requeued).
    """
    sys.path.insert(0, os.getcwd())
    topology = load(topology_file)
    unknown = sorted(set(only) - set(topology.workers))
    if unknown:
        raise click.UsageError(
            f"unknown worker(s) {', '.join(unknown)} (known: {', '.join(topology.workers)})"
        )
    if not no_apply:
        result = run(apply(topology, url, management_url=management_url))
        click.echo(result.summary(), err=True)
    log_format = ctx.find_root().params.get("log_format", "auto")
    children = [
        Child(f"{name}#{replica}", worker_command(name, topology_file, url, log_format))
        for name, spec in topology.workers.items()
        if not only or name in only
        for replica in range(1, spec.replicas + 1)
    ]
    click.echo(
        f"Starting {len(children)} worker process(es): "
        f"{', '.join(c.name for c in children)}. Ctrl-C stops them.",
        err=True,
    )
    supervisor = Supervisor(children)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.stop)
        await supervisor.run()

    run(main())
