"""`fleet topology check|plan|apply|graph|users`: the topology file against the code
and the broker.

`check`, `graph` and `users` import the workers' modules to learn what each
handler takes and emits, and hand that to `topology` as data; `plan` and `apply`
talk to the broker (and import the modules too under `access.users`, whose
permissions come from the handlers).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from topology import (
    PROJECT_FILE,
    BrokerUnreachable,
    Change,
    MissingPassword,
    Problem,
    Resources,
    Topology,
    TopologyError,
    TopologyInvalid,
    UnsafeChange,
    WorkerWiring,
    check_outbox_contracts,
    check_references,
    check_webhook_contracts,
    check_wiring,
    find_file,
    load,
    mermaid,
)
from topology.apply import apply, desired_resources, survey
from topology.grants import describe_topic
from topology.names import password_variable
from topology.nodes import first_reachable, with_credentials
from topology.passwords import collect_passwords, read_passwords_file
from topology.plan import ChangeKind
from topology.versions import Version, parse_version
from workers.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, cli, fail
from workers.cli.options import (
    file_option,
    management_url_option,
    passwords_file_option,
    resolve_url,
    url_option,
)
from workers.loader import import_contracts, load_workers
from workers.project import register_contracts, unlisted_contracts
from workers.runtime.batching import batch_problems
from workers.runtime.ordering import order_problem
from workers.worker import Worker

#: `fleet topology plan`: the broker differs from the file; `apply` would change it.
EXIT_PENDING = 3

T = TypeVar("T")

_COLOURS: dict[ChangeKind, str] = {
    "create": "green",
    "change": "yellow",
    "drift": "magenta",
    "unmanaged": "bright_black",
    "remove": "red",
}

_GROUP_EPILOG = """\b
Examples:
  fleet topology check
  fleet topology plan --url amqp://guest:guest@rabbit:5672/shop
  fleet topology apply --file examples/fulfilment/fleet.yaml
  fleet topology apply --passwords-file /run/secrets/fleet-passwords
  fleet topology graph > docs/topology.mmd
  fleet topology users --url amqp://rabbit:5672/shop
"""

_CHECK_EPILOG = """\b
Examples:
  fleet topology check
  fleet topology check --file staging.yaml
  fleet topology check --rabbitmq-version 4.0
  PYTHONPATH=src fleet topology check -f fleet.yaml
"""

_PLAN_EPILOG = """\b
Examples:
  fleet topology plan
  fleet topology plan --url amqp://guest:guest@rabbit:5672/shop
  fleet topology plan > plan.txt; test $? -eq 3 && fleet topology apply
"""

_APPLY_EPILOG = """\b
Examples:
  fleet topology apply
  fleet topology apply --url amqp://guest:guest@rabbit:5672/shop
  fleet topology apply --recreate          # asks before deleting queues
  fleet topology apply --recreate --yes    # in CI: no questions
  FLEET_PASSWORD_FLEET_ORDERS=s3cret fleet topology apply   # access.users
  fleet topology apply --passwords-file secrets.txt         # fleet-orders:s3cret lines
"""

_USERS_EPILOG = """\b
Examples:
  fleet topology users
  fleet topology users --file fleet.yaml --url amqps://rabbit:5671/shop
"""

_GRAPH_EPILOG = """\b
Examples:
  fleet topology graph > topology.mmd
  fleet topology graph --no-code
  fleet topology graph > topology.mmd && mmdc -i topology.mmd -o topology.svg
"""


@cli.group("topology", epilog=_GROUP_EPILOG)
def topology_group() -> None:
    """The topology file: check it, plan and apply it on the broker, draw it."""


def _rabbitmq_version(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> Version | None:
    if value is None:
        return None
    try:
        return parse_version(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@topology_group.command("check", epilog=_CHECK_EPILOG)
@file_option
@click.option(
    "--rabbitmq-version",
    "rabbitmq",
    envvar="FLEET_RABBITMQ_VERSION",
    default=None,
    callback=_rabbitmq_version,
    metavar="X.Y",
    help="The RabbitMQ version the fleet runs on (env FLEET_RABBITMQ_VERSION): warn only "
    "about settings that version treats differently; default: about those any version "
    "from 3.10 on does, each naming its versions.",
)
def check(topology_file: str | None, rabbitmq: Version | None) -> None:
    """Check the topology file against the workers' code.

    Imports each worker's module and checks that every event a handler takes
    is routed to the worker's queue, and that every event it emits reaches a
    queue or is listed as terminal. Warns about queue settings RabbitMQ versions
    treat differently (transient classic queues, x-queue-mode, x-queue-master-locator,
    ...). Prints every error and warning.

    \b
    Exit status:
      0  no errors (warnings allowed)
      1  the file and the code disagree, or a worker module cannot be imported
      2  the file itself is invalid
    """
    topology = load(topology_file)
    workers, problems = _workers(topology)
    wiring = {name: worker.wiring() for name, worker in workers.items()}
    # load() keeps only the errors; the warnings about the file itself belong here.
    problems += [p for p in check_references(topology, rabbitmq) if p.severity == "warning"]
    problems += check_wiring(topology, wiring)
    for name, worker in workers.items():
        problems += batch_problems(name, topology.workers[name], worker)
    for name, code in workers.items():
        ordered = order_problem(name, topology.workers[name], code)
        problems += [] if ordered is None else [ordered]
    registry = register_contracts(topology, workers)
    problems += unlisted_contracts(topology, workers, registry)
    if topology.webhooks:
        problems += check_webhook_contracts(topology, registry)
    problems += check_outbox_contracts(topology, registry)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        _echo_problem(problem)
    source = topology_file or PROJECT_FILE
    warnings = _plural(len(problems) - len(errors), "warning")
    if errors:
        click.echo(f"{source}: {_plural(len(errors), 'error')}, {warnings}.")
        sys.exit(EXIT_FAILURE)
    counted = _plural(len(topology.workers), "worker")
    click.echo(f"OK: {source} and the code of its {counted} agree ({warnings}).")


@topology_group.command("plan", epilog=_PLAN_EPILOG)
@file_option
@url_option
@management_url_option
@passwords_file_option
def plan(
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
    passwords_file: str | None,
) -> None:
    """Show what `apply` would change on the broker, changing nothing.

    Compares the file with the broker's vhost (through the management API) and
    with what fleet last applied there, broker users (access.users) included:
    a missing user, permissions that differ, extra topic permissions, and a
    password that is not the given one (when it is given):

    \b
      + create     declared, never applied, absent on the broker
      ~ change     the file changed it since the last apply
      ! drift      changed or deleted on the broker by hand since the last apply
      ? unmanaged  on the broker, not in the file; apply leaves it alone
      - remove     a binding fleet made that the file no longer declares, or the
                   permissions of a user it made that the file no longer has

    A change marked "needs --recreate" is one RabbitMQ cannot make in place
    (a queue's type or arguments): see `apply --recreate`.

    \b
    Exit status:
      0  nothing to apply: the broker matches the file
      3  changes pending
      1  the broker or its management API cannot be reached
      2  the file is invalid
    """
    topology = load(topology_file)
    desired = desired_with_users(topology, topology_file)
    passwords = known_passwords(desired, passwords_file)
    node = first_reachable(resolve_url(url, topology))
    current, _ = survey(desired, node, management_url=management_url, passwords=passwords)
    for change in current.changes:
        click.echo(_styled(change, change.render()))
    click.echo(current.summary())
    sys.exit(EXIT_PENDING if current.pending else EXIT_OK)


@topology_group.command("apply", epilog=_APPLY_EPILOG)
@file_option
@url_option
@management_url_option
@click.option(
    "--recreate",
    is_flag=True,
    help="Delete and declare again what cannot change in place: a deleted queue loses its "
    "messages, a deleted exchange its bindings.",
)
@click.option("--yes", "-y", is_flag=True, help="With --recreate, do not ask first.")
@passwords_file_option
def apply_command(
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
    recreate: bool,
    yes: bool,
    passwords_file: str | None,
) -> None:
    """Make the broker match the topology file.

    Declares exchanges, queues (with their retry and dead-letter queues and
    failure exchanges) and bindings; unbinds what fleet made and the file
    dropped; never touches what it does not manage, and never deletes a queue
    or exchange unless --recreate says so. Running it again right away changes
    nothing.

    With access.users in the file it also keeps one broker user per worker, the
    ingress and the webhook dispatcher, each allowed only what its process
    does (see `fleet topology users`); it needs a user with the administrator
    tag, and each new user's password (FLEET_PASSWORD_<USER> or
    --passwords-file).

    A change RabbitMQ cannot make in place is refused, changing nothing,
    unless --recreate is given; on a terminal, fleet then asks before deleting
    anything (skip with --yes).

    \b
    Exit status:
      0  the broker matches the file
      1  refused (needs --recreate), aborted, or the broker cannot be reached
      2  the file is invalid
    """
    topology = load(topology_file)
    desired = desired_with_users(topology, topology_file)
    passwords = known_passwords(desired, passwords_file)
    digest = hashlib.sha256(find_file(topology_file).read_bytes()).hexdigest()
    confirm = _confirm_recreate if recreate and not yes and _interactive() else None
    result = _run(
        apply(
            desired,
            first_reachable(resolve_url(url, topology)),
            management_url=management_url,
            recreate=recreate,
            confirm=confirm,
            on_change=_echo_applied,
            file_sha256=digest,
            passwords=passwords,
        )
    )
    if result.declined:
        fail("aborted: nothing was changed")
    click.echo(result.summary())


@topology_group.command("graph", epilog=_GRAPH_EPILOG)
@file_option
@click.option(
    "--no-code",
    is_flag=True,
    help="Draw from the file alone, without importing the workers' modules.",
)
def graph(topology_file: str | None, no_code: bool) -> None:
    """Print the topology as a Mermaid flowchart.

    exchange → (routing key) → queue → worker → emitted event → exchange.
    The events each worker emits come from its handlers, so the workers'
    modules are imported; a module that cannot be imported is drawn without
    its events, with a warning on stderr.
    """
    topology = load(topology_file)
    wiring: dict[str, WorkerWiring] = {}
    if not no_code:
        wiring, problems = _wiring(topology)
        for problem in problems:
            click.secho(f"warning: {problem}", fg="yellow", err=True)
    click.echo(mermaid(topology, wiring), nl=False)


@topology_group.command("users", epilog=_USERS_EPILOG)
@file_option
@url_option
def users_command(topology_file: str | None, url: str | None) -> None:
    """Print the broker users access.users makes, what each may do, and how its
    process connects as it.

    Each process gets a user of its own: <prefix><worker> for each worker,
    <prefix>ingress and <prefix>webhooks (prefix `fleet-` by default). A user
    may write its own exchanges and read its own queues, and on a topic
    exchange publish only the routing keys its process sends; '' allows
    nothing. A process connects as its user with --url naming the user and no
    password; fleet takes the password from FLEET_PASSWORD_<USER>, the same
    variable `apply` reads.
    """
    topology = load(topology_file)
    if not topology.access.users:
        fail("the topology has no access.users: true (its processes share the --url user)")
    desired = desired_with_users(topology, topology_file)
    base = resolve_url(url, topology).split(",")[0]
    for user in desired.users:
        click.echo(f"{user.name}  ({user.process})")
        permissions = user.permissions
        assert permissions is not None
        for field in ("configure", "write", "read"):
            click.echo(f"  {field:<10} {getattr(permissions, field) or repr('')}")
        for topic in user.topics:
            click.echo(f"  topic      {topic.exchange}: {describe_topic(topic)}")
        if user.tags:
            click.echo(f"  tags       {', '.join(user.tags)}")
        click.echo(f"  password   {password_variable(user.name)}")
        click.echo(
            f"  connect    {_command(user.process)} --url {with_credentials(base, user.name)}"
        )


def _command(process: str) -> str:
    """``worker orders`` → ``fleet worker run orders``: the process's command line."""
    kind, _, name = process.partition(" ")
    return f"fleet {kind} run {name}".rstrip()


def desired_with_users(topology: Topology, topology_file: str | None) -> Resources:
    """What the file expands to; under access.users with its users, whose permissions
    come from the handlers (a worker module that cannot be imported is an error)."""
    if topology.webhooks or (
        topology.access.users and (topology.ingress.routes or topology.outbox)
    ):
        import_contracts(topology)  # routing keys of subscriptions, routes and the outbox
    wiring: dict[str, WorkerWiring] = {}
    if topology.access.users:
        wiring, problems = _wiring(topology)
        if problems:
            fail(f"{problems[0]} (access.users takes each worker's permissions from its handlers)")
    return desired_resources(topology, wiring)


def known_passwords(desired: Resources, passwords_file: str | None) -> dict[str, str]:
    """The known passwords of the file's users: from --passwords-file, else the environment."""
    if not desired.users:
        return {}
    file = read_passwords_file(passwords_file) if passwords_file else None
    return collect_passwords(
        [u.name for u in desired.users], os.environ, file, source=passwords_file or ""
    )


def _wiring(topology: Topology) -> tuple[dict[str, WorkerWiring], list[Problem]]:
    """Each importable worker's wiring, and a problem for each that is not."""
    workers, problems = _workers(topology)
    return {name: worker.wiring() for name, worker in workers.items()}, problems


def _workers(topology: Topology) -> tuple[dict[str, Worker], list[Problem]]:
    """Each importable worker, and a problem for each that is not."""
    return load_workers(topology)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run apply; TopologyErrors the fleet group does not map become one line, exit 1."""
    try:
        return asyncio.run(coroutine)
    except (BrokerUnreachable, UnsafeChange, TopologyInvalid):
        raise
    except MissingPassword as exc:
        fail(str(exc), EXIT_USAGE)
        raise  # unreachable: fail() exits
    except TopologyError as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm_recreate(unsafe: list[Change]) -> bool:
    click.echo("These cannot change in place; --recreate deletes them and declares them again:")
    for change in unsafe:
        click.echo(_styled(change, change.render()))
    queues = sum(1 for c in unsafe if c.resource.key.startswith("queue "))
    loss = f"{_plural(queues, 'queue')} and the messages in them" if queues else "them"
    return click.confirm(f"Delete {loss}?", default=False)


def _echo_applied(change: Change) -> None:
    click.echo(_styled(change, change.title + ("" if change.in_place else " (recreated)")))


def _echo_problem(problem: Problem) -> None:
    if problem.severity == "error":
        click.secho(f"error: {problem}", fg="red")
    else:
        click.secho(str(problem), fg="yellow")


def _styled(change: Change, text: str) -> str:
    return click.style(text, fg=_COLOURS[change.kind])


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
