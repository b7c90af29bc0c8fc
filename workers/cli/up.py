"""`fleet up`: apply the topology and run every worker with its replicas, the webhook
dispatcher when the topology has subscriptions (and, with `--standins`, the stand-in
gateway, carrier and webhook receiver the reference fleet calls)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg
import click

from topology import Topology, load
from topology.apply import apply
from topology.nodes import first_reachable
from workers.cli import cli, fail
from workers.cli.options import (
    file_option,
    management_url_option,
    metrics_port_option,
    resolve_url,
    url_option,
)
from workers.loader import import_contracts
from workers.runtime.loop import run
from workers.standard_webhooks import new_secret
from workers.supervisor import (
    Child,
    Supervisor,
    ingress_command,
    webhooks_command,
    worker_command,
)

EXAMPLES = """
\b
Examples:
  fleet up --standins --database-url postgresql://postgres@127.0.0.1:5432/fleet
  make up                                    # the same, on a fresh machine
  fleet up --only inventory --only payments
  fleet up --only webhooks                   # just the webhook dispatcher
  fleet up --ingress-port 9080               # the HTTP ingress on :9080
  fleet up --file my-fleet.yaml --url amqp://user:pw@rabbit:5672/prod
  fleet up --metrics-port 9300               # worker processes on :9300, :9301, ...
"""

#: Where `--standins` serves the gateway and the carrier, and the workers' defaults.
STANDINS_PORT = 8765


@cli.command(epilog=EXAMPLES)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="WORKER",
    help="Run only these workers (repeatable; `webhooks` is the webhook dispatcher, "
    "`ingress` the HTTP ingress); default: all of them.",
)
@click.option(
    "--ingress-port",
    type=click.IntRange(min=1, max=65535),
    default=8080,
    show_default=True,
    envvar="FLEET_INGRESS_PORT",
    help="Port of the HTTP ingress, run when the topology declares ingress routes.",
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
@metrics_port_option
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
    ingress_port: int,
    database_url: str | None,
    metrics_port: int | None,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
) -> None:
    """Apply the topology, then run every worker with its replica count.

    Each replica is its own `fleet worker run` process; webhook subscriptions
    get one `fleet webhooks run` process, ingress routes one `fleet ingress run`
    (on --ingress-port). A process that exits
    unexpectedly is restarted with backoff; Ctrl-C or SIGTERM stops them all
    gracefully (in-flight work finishes, the rest is requeued).

    The reference workers keep their state in PostgreSQL and refuse to start
    without --database-url; they call a payment gateway and a carrier, which
    --standins provides on this machine.

    Worker process n (counting from 0, in the order printed at start) serves
    its Prometheus metrics on --metrics-port + n.
    """
    sys.path.insert(0, os.getcwd())
    topology = load(topology_file)
    url = resolve_url(url, topology)
    runnable = [
        *topology.workers,
        *(["webhooks"] if topology.webhooks else []),
        *(["ingress"] if topology.ingress.routes else []),
    ]
    unknown = sorted(set(only) - set(runnable))
    if unknown:
        raise click.UsageError(
            f"unknown worker(s) {', '.join(unknown)} (known: {', '.join(runnable)})"
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
    if topology.webhooks:
        import_contracts(topology_file)  # subscriptions bind their contracts' routing keys
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
        os.environ.setdefault("FLEET_NOTIFY_WEBHOOK_URL", f"{base}/webhooks/notifications")
    if management_url:
        os.environ["FLEET_MANAGEMENT_URL"] = management_url  # the workers' lag polls
    port_base = topology.metrics.port if metrics_port is None else metrics_port
    replicas = [
        (name, replica)
        for name, spec in topology.workers.items()
        if not only or name in only
        for replica in range(1, spec.replicas + 1)
    ]
    ports = metrics_ports(port_base, len(replicas))
    children += [
        Child(f"{name}#{replica}", worker_command(name, topology_file, url, log_format, port))
        for (name, replica), port in zip(replicas, ports, strict=True)
    ]
    wanted = not only or "webhooks" in only
    if topology.webhooks and wanted and _webhook_secrets_ready(topology, standins):
        children.append(Child("webhooks", webhooks_command(topology_file, url, log_format)))
    if topology.ingress.routes and (not only or "ingress" in only):
        children.append(
            Child("ingress", ingress_command(topology_file, url, log_format, ingress_port))
        )
    click.echo(
        f"Starting {len(children)} process(es): "
        f"{', '.join(c.name for c in children)}. Ctrl-C stops them.",
        err=True,
    )
    if port_base:
        listing = ", ".join(
            f"{name}#{replica} :{port}"
            for (name, replica), port in zip(replicas, ports, strict=True)
        )
        click.echo(f"Metrics (/metrics): {listing}", err=True)
    supervisor = Supervisor(children)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.stop)
        await supervisor.run()

    run(main())


def metrics_ports(base: int, count: int) -> list[int]:
    """One port per worker process, counting up from `base`; all 0 (off) when it is 0."""
    return [base + i if base else 0 for i in range(count)]


def _webhook_secrets_ready(topology: Topology, standins: bool) -> bool:
    """Whether every subscription has a secret. With the stand-ins, a missing one is
    made up for this run (the dispatcher and the stand-in receiver share it);
    without, the dispatcher is left out with a warning."""
    for name, spec in topology.webhooks.items():
        if any(os.environ.get(var) for var in spec.secrets_env):
            continue
        if standins:
            os.environ[spec.secrets_env[0]] = new_secret()
            click.echo(
                f"webhooks.{name}: {spec.secrets_env[0]} was not set; "
                "signing with a secret made up for this run",
                err=True,
            )
            continue
        click.secho(
            f"warning: webhooks.{name}: none of {', '.join(spec.secrets_env)} is set: "
            "the webhook dispatcher is not started",
            fg="yellow",
            err=True,
        )
        return False
    return True


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
