"""`fleet up`: apply the topology and run every worker with its replicas, the webhook
dispatcher when the topology has subscriptions, the ingress when it has routes, and
the topology's own `processes` (stand-ins for external systems, local tools)."""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import click

from topology import Topology, load
from topology.apply import apply
from topology.names import (
    INGRESS_PROCESS,
    OUTBOX_PROCESS,
    WEBHOOKS_PROCESS,
    broker_user,
    password_variable,
)
from topology.nodes import first_reachable, join_urls, split_urls, with_credentials
from workers.cli import EXIT_USAGE, cli, fail
from workers.cli.options import (
    file_option,
    management_url_option,
    metrics_port_option,
    passwords_file_option,
    resolve_url,
    url_option,
)
from workers.cli.topology import desired_with_users, known_passwords
from workers.loader import import_contracts, load_worker
from workers.runtime.loop import run
from workers.supervisor import (
    Child,
    Supervisor,
    fleet_command,
    ingress_command,
    outbox_command,
    process_command,
    webhooks_command,
    worker_command,
)

#: The operator console's name under --only and in the supervisor's log.
CONSOLE = "console"

EXAMPLES = """
\b
Examples:
  fleet up --database-url postgresql://postgres@127.0.0.1:5432/fleet
  make up                                    # the reference fleet, on a fresh machine
  fleet up --only inventory --only payments
  fleet up --only webhooks                   # just the webhook dispatcher
  fleet up --ingress-port 9080               # the HTTP ingress on :9080
  fleet up --file my-fleet.yaml --url amqp://user:pw@rabbit:5672/prod
  fleet up --metrics-port 9300               # worker processes on :9300, :9301, ...
  fleet up --passwords-file secrets.txt      # access.users: each process as its own user
  fleet up --console-port 0                  # without the console
"""


@cli.command(epilog=EXAMPLES)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="WORKER",
    help="Run only these workers (repeatable; `webhooks` is the webhook dispatcher, "
    "`ingress` the HTTP ingress, `outbox` the outbox relay, and a name under `processes` "
    "that process); default: all.",
)
@click.option(
    "--ingress-port",
    type=click.IntRange(min=1, max=65535),
    default=8080,
    show_default=True,
    envvar="FLEET_INGRESS_PORT",
    help="Port of the HTTP ingress, run when the topology declares ingress routes.",
)
@click.option(
    "--console-port",
    type=click.IntRange(min=0, max=65535),
    default=8090,
    show_default=True,
    envvar="FLEET_CONSOLE_PORT",
    help="Port of the operator console (`fleet console`, on 127.0.0.1); 0: no console.",
)
@click.option("--no-apply", is_flag=True, help="Do not apply the topology first.")
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
@passwords_file_option
@click.pass_context
def up(
    ctx: click.Context,
    only: tuple[str, ...],
    no_apply: bool,
    ingress_port: int,
    console_port: int,
    database_url: str | None,
    metrics_port: int | None,
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
    passwords_file: str | None,
) -> None:
    """Apply the topology, then run every worker with its replica count.

    Each replica is its own `fleet worker run` process; webhook subscriptions
    get one `fleet webhooks run` process, ingress routes one `fleet ingress run`
    (on --ingress-port), the operator console one `fleet console` (on
    127.0.0.1:--console-port), an `outbox:` one `fleet outbox run` (its database from
    outbox.database_env; its metrics on the port after the workers'). A process that exits
    unexpectedly is restarted with backoff; Ctrl-C or SIGTERM stops them all
    gracefully (in-flight work finishes, the rest is requeued).

    The topology's `processes` run beside them, supervised the same way (a
    stand-in for an external system, say). Workers that keep state refuse to
    start without --database-url.

    Worker process n (counting from 0, in the order printed at start) serves
    its Prometheus metrics on --metrics-port + n.

    With access.users, --url is the operator's (apply sets up the users) and
    every process connects as its own user, with the password from
    FLEET_PASSWORD_<USER> or --passwords-file.
    """
    topology = load(topology_file)
    url = resolve_url(url, topology)
    runnable = [
        *topology.processes,
        *topology.workers,
        *(["webhooks"] if topology.webhooks else []),
        *(["ingress"] if topology.ingress.routes else []),
        *([OUTBOX_PROCESS] if topology.outbox else []),
        *([CONSOLE] if console_port else []),
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
        stateful = [
            name
            for name, spec in topology.workers.items()
            if (not only or name in only) and load_worker(name, spec).needs_database
        ]
        if stateful:
            fail(
                f"{', '.join(stateful)} keep their state in PostgreSQL: "
                "pass --database-url or set FLEET_DATABASE_URL",
                EXIT_USAGE,
            )
    if topology.webhooks:
        import_contracts(topology)  # subscriptions bind their contracts' routing keys
    desired = desired_with_users(topology, topology_file)
    passwords = known_passwords(desired, passwords_file)
    lacking = [u.name for u in desired.users if u.name not in passwords]
    if lacking:
        variables = ", ".join(password_variable(name) for name in lacking)
        fail(
            f"access.users: every process connects as its own user, and these have no "
            f"password: {', '.join(lacking)} (set {variables}, or give --passwords-file)",
            EXIT_USAGE,
        )
    if not no_apply:
        result = run(
            apply(
                desired,
                first_reachable(url),
                management_url=management_url,
                passwords=passwords,
            )
        )
        click.echo(result.summary(), err=True)
    # The children take their users' passwords from the environment (not their argv).
    os.environ.update({password_variable(user): pw for user, pw in passwords.items()})

    def url_of(process: str) -> str:
        """The broker URL(s) a child connects with: its own user under access.users."""
        if not topology.access.users:
            return url
        user = broker_user(topology.access.prefix, process)
        return join_urls(with_credentials(u, user) for u in split_urls(url))

    log_format = ctx.find_root().params.get("log_format", "auto")
    children = [
        Child(name, process_command(spec.command, log_format), spec.env)
        for name, spec in topology.processes.items()
        if not only or name in only
    ]
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
        Child(
            f"{name}#{replica}",
            worker_command(name, topology_file, url_of(name), log_format, port),
        )
        for (name, replica), port in zip(replicas, ports, strict=True)
    ]
    wanted = not only or "webhooks" in only
    if topology.webhooks and wanted and _webhook_secrets_ready(topology):
        children.append(
            Child("webhooks", webhooks_command(topology_file, url_of(WEBHOOKS_PROCESS), log_format))
        )
    if topology.ingress.routes and (not only or "ingress" in only):
        children.append(
            Child(
                "ingress",
                ingress_command(topology_file, url_of(INGRESS_PROCESS), log_format, ingress_port),
            )
        )
    if topology.outbox and (not only or OUTBOX_PROCESS in only):
        if os.environ.get(topology.outbox.database_env):
            # The relay's metrics follow the workers' ports.
            port = port_base + len(replicas) if port_base else 0
            children.append(
                Child(
                    OUTBOX_PROCESS,
                    outbox_command(topology_file, url_of(OUTBOX_PROCESS), log_format, port),
                )
            )
        else:
            click.secho(
                f"warning: outbox: {topology.outbox.database_env} is not set: "
                "the outbox relay is not started",
                fg="yellow",
                err=True,
            )
    if console_port and (not only or CONSOLE in only):
        # The operator's URL, not a process user's: the console replays and purges.
        command = fleet_command(log_format, topology_file, url, "console", "--port",
                                str(console_port))  # fmt: skip
        children.append(Child(CONSOLE, command))
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


def _webhook_secrets_ready(topology: Topology) -> bool:
    """Whether every subscription has a secret; without, the dispatcher is left out
    with a warning."""
    for name, spec in topology.webhooks.items():
        if any(os.environ.get(var) for var in spec.secrets_env):
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
