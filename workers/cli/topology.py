"""`fleet topology check|plan|apply|graph`: the topology file against the code and the broker.

`check` and `graph` import the workers' modules to learn what each handler
takes and emits, and hand that to `topology` as data; `plan` and `apply` talk
to the broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from topology import (
    DEFAULT_FILE,
    BrokerUnreachable,
    Change,
    Problem,
    Topology,
    TopologyError,
    TopologyInvalid,
    UnsafeChange,
    WorkerWiring,
    check_references,
    check_webhook_contracts,
    check_wiring,
    expand,
    load,
    mermaid,
)
from topology.apply import apply, survey
from topology.nodes import first_reachable
from topology.plan import ChangeKind
from workers.cli import EXIT_FAILURE, EXIT_OK, cli, fail
from workers.cli.options import file_option, management_url_option, resolve_url, url_option
from workers.loader import import_contracts, load_worker

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
  fleet topology apply --file topology/fleet.yaml
  fleet topology graph > docs/topology.mmd
"""

_CHECK_EPILOG = """\b
Examples:
  fleet topology check
  fleet topology check --file staging.yaml
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


@topology_group.command("check", epilog=_CHECK_EPILOG)
@file_option
def check(topology_file: str | None) -> None:
    """Check the topology file against the workers' code.

    Imports each worker's module and checks that every event a handler takes
    is routed to the worker's queue, and that every event it emits reaches a
    queue or is listed as terminal. Prints every error and warning.

    \b
    Exit status:
      0  no errors (warnings allowed)
      1  the file and the code disagree, or a worker module cannot be imported
      2  the file itself is invalid
    """
    topology = load(topology_file)
    wiring, problems = _wiring(topology)
    # load() keeps only the errors; the warnings about the file itself belong here.
    problems += [p for p in check_references(topology) if p.severity == "warning"]
    problems += check_wiring(topology, wiring)
    if topology.webhooks:
        from contracts import default_registry

        import_contracts(topology_file)
        problems += check_webhook_contracts(topology, default_registry)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        _echo_problem(problem)
    source = topology_file or str(DEFAULT_FILE)
    warnings = _plural(len(problems) - len(errors), "warning")
    if errors:
        click.echo(f"{source}: {_plural(len(errors), 'error')}, {warnings}.")
        sys.exit(EXIT_FAILURE)
    workers = _plural(len(topology.workers), "worker")
    click.echo(f"OK: {source} and the code of its {workers} agree ({warnings}).")


@topology_group.command("plan", epilog=_PLAN_EPILOG)
@file_option
@url_option
@management_url_option
def plan(topology_file: str | None, url: str | None, management_url: str | None) -> None:
    """Show what `apply` would change on the broker, changing nothing.

    Compares the file with the broker's vhost (through the management API) and
    with what fleet last applied there:

    \b
      + create     declared, never applied, absent on the broker
      ~ change     the file changed it since the last apply
      ! drift      changed or deleted on the broker by hand since the last apply
      ? unmanaged  on the broker, not in the file; apply leaves it alone
      - remove     a binding fleet made that the file no longer declares

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
    if topology.webhooks:
        import_contracts(topology_file)  # subscriptions bind their contracts' routing keys
    node = first_reachable(resolve_url(url, topology))
    current, _ = survey(expand(topology), node, management_url=management_url)
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
def apply_command(
    topology_file: str | None,
    url: str | None,
    management_url: str | None,
    recreate: bool,
    yes: bool,
) -> None:
    """Make the broker match the topology file.

    Declares exchanges, queues (with their retry and dead-letter queues) and
    bindings; unbinds what fleet made and the file dropped; never touches
    what it does not manage, and never deletes a queue or exchange unless
    --recreate says so. Running it again right away changes nothing.

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
    if topology.webhooks:
        import_contracts(topology_file)  # subscriptions bind their contracts' routing keys
    digest = hashlib.sha256(Path(topology_file or DEFAULT_FILE).read_bytes()).hexdigest()
    confirm = _confirm_recreate if recreate and not yes and _interactive() else None
    result = _run(
        apply(
            topology,
            first_reachable(resolve_url(url, topology)),
            management_url=management_url,
            recreate=recreate,
            confirm=confirm,
            on_change=_echo_applied,
            file_sha256=digest,
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


def _wiring(topology: Topology) -> tuple[dict[str, WorkerWiring], list[Problem]]:
    """Each importable worker's wiring, and a problem for each that is not."""
    wiring: dict[str, WorkerWiring] = {}
    problems: list[Problem] = []
    for name, spec in topology.workers.items():
        path = f"workers.{name}.module"
        try:
            wiring[name] = load_worker(name, spec).wiring()
        except LookupError as exc:  # WorkerNotFound: no such module, or no such Worker in it
            problems.append(Problem(path, str(exc)))
        except Exception as exc:
            # The module is the user's code: whatever it raises on import is a finding.
            problems.append(
                Problem(path, f"importing {spec.module!r} failed: {type(exc).__name__}: {exc}")
            )
    return wiring, problems


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run apply; TopologyErrors the fleet group does not map become one line, exit 1."""
    try:
        return asyncio.run(coroutine)
    except (BrokerUnreachable, UnsafeChange, TopologyInvalid):
        raise
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
