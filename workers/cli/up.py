"""`fleet up`: apply the topology and run every worker with its replicas (and, with
`--standins`, the stand-in gateway and carrier the reference workers call)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg
import click

from topology import load
from topology.apply import apply
from topology.nodes import first_reachable
from workers.cli import cli, fail
from workers.cli.options import file_option, management_url_option, resolve_url, url_option
from workers.runtime.loop import run
from workers.supervisor import Child, Supervisor, worker_command

EXAMPLES = """
\b
Examples:
  fleet up --standins --database-url postgresql://postgres@127.0.0.1:5432/fleet
  make up                                    # the same, on a fresh machine
  fleet up --only inventory --only payments
  fleet up --file my-fleet.yaml --url amqp://user:pw@rabbit:5672/prod
"""

#: Where `--standins` serves the gateway and the carrier, and the workers' defaults.
STANDINS_PORT = 8765


@cli.command(epilog=EXAMPLES)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="WORKER",
    help="Run only these workers (repeatable); default: all of them.",
)
@click.option("--no-apply", is_flag=True, help="Do not apply the topology first.")
@click.option(
    "--standins",
    is_flag=True,
    help="Also run the stand-in payment gateway and carrier (`fleet standins run`), supervised.",
)
@click.option(
    "--standins-port",
    type=click.IntRange(min=1, max=65535),
    default=STANDINS_PORT,
    show_default=True,
    envvar="FLEET_STANDINS_PORT",
    help="Port of the stand-ins; the workers are pointed at it.",
)
@click.option(
    "--database-url",
    envvar="FLEET_DATABASE_URL",
    default=None,
    help="PostgreSQL URL for every worker (env FLEET_DATABASE_URL): their inbox, timeline "
    "and, for the reference workers, their tables.",
)
@file_option
@url_option
@management_url_option
@click.pass_context
def up(
    ctx: click.Context,
    only: tuple[str, ...],
    no_apply: bool,
    standins: bool,
    standins_port: int,
    database_url: str | None,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
) -> None:
    """Apply the topology, then run every worker with its replica count.

    Each replica is its own `fleet worker run` process. A process that exits
    unexpectedly is restarted with backoff; Ctrl-C or SIGTERM stops them all
    gracefully (in-flight work finishes, the rest is requeued).

    The reference workers keep their state in PostgreSQL and refuse to start
    without --database-url; they call a payment gateway and a carrier, which
    --standins provides on this machine.
    """
    sys.path.insert(0, os.getcwd())
    topology = load(topology_file)
    url = resolve_url(url, topology)
    unknown = sorted(set(only) - set(topology.workers))
    if unknown:
        raise click.UsageError(
            f"unknown worker(s) {', '.join(unknown)} (known: {', '.join(topology.workers)})"
        )
    if database_url:
        problem = run(_database_problem(database_url))
        if problem:
            fail(f"cannot use the database {database_url!r}: {problem}")
        os.environ["FLEET_DATABASE_URL"] = database_url  # the children's --database-url
    else:
        click.secho(
            "warning: no --database-url / FLEET_DATABASE_URL: workers that keep state will "
            "refuse to start",
            fg="yellow",
            err=True,
        )
    if not no_apply:
        result = run(apply(topology, first_reachable(url), management_url=management_url))
        click.echo(result.summary(), err=True)
    log_format = ctx.find_root().params.get("log_format", "auto")
    children = []
    if standins:
        children.append(Child("standins", _standins_command(standins_port, log_format)))
        base = f"http://127.0.0.1:{standins_port}"
        os.environ.setdefault("FLEET_GATEWAY_URL", f"{base}/gateway")
        os.environ.setdefault("FLEET_CARRIER_URL", f"{base}/carrier")
    children += [
        Child(f"{name}#{replica}", worker_command(name, topology_file, url, log_format))
        for name, spec in topology.workers.items()
        if not only or name in only
        for replica in range(1, spec.replicas + 1)
    ]
    click.echo(
        f"Starting {len(children)} process(es): "
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


async def _database_problem(database_url: str) -> str | None:
    """Why the database cannot be used, if it cannot: one line now beats every
    worker failing at its start."""
    try:
        connection = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        return str(error) or type(error).__name__
    await connection.close()
    return None


def _standins_command(port: int, log_format: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workers.cli",
        "--log-format",
        log_format,
        "standins",
        "run",
        "--port",
        str(port),
    ]
