"""The `fleet` command: one click group per noun, one module each.

Exit codes: 0 ok, 1 failure (broker unreachable, work failed, changes pending
where a command says so), 2 usage (a mistake in the command or its input).
A mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any, NoReturn

import click

from contracts import ContractError
from topology import BrokerUnreachable, TopologyInvalid, TopologyNotFound, UnsafeChange
from workers.errors import NotADeadLetterQueue, WorkerError, WorkerNotFound
from workers.project import use_project_paths
from workers.runtime.logging import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


#: Command modules, imported only when their command runs: `fleet worker run`
#: then never loads the HTTP client, the database driver or the other commands.
COMMANDS = {
    "asyncapi": "workers.cli.asyncapi",
    "console": "workers.cli.console",
    "contracts": "workers.cli.contracts",
    "dlq": "workers.cli.dlq",
    "ingress": "workers.cli.ingress",
    "new": "workers.cli.new",
    "outbox": "workers.cli.outbox",
    "publish": "workers.cli.publish",
    "saga": "workers.cli.saga",
    "status": "workers.cli.status",
    "stream": "workers.cli.stream",
    "topology": "workers.cli.topology",
    "up": "workers.cli.up",
    "webhooks": "workers.cli.webhooks",
    "worker": "workers.cli.worker",
}


#: Where installed projects add commands of their own (the reference fleet adds
#: `demo` and `standins`): ``[project.entry-points."fleet.commands"]``, name =
#: "module:click_command". fleet never imports a project by name.
PLUGIN_GROUP = "fleet.commands"


def plugins() -> dict[str, EntryPoint]:
    """The commands installed projects add, by name (fleet's own win a clash)."""
    return {e.name: e for e in entry_points(group=PLUGIN_GROUP) if e.name not in COMMANDS}


class FleetGroup(click.Group):
    """A group that turns fleet's errors into one line on stderr and a meaningful exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands) | set(plugins()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])  # the module adds itself to `cli`
        elif cmd_name not in self.commands and cmd_name in plugins():
            command = plugins()[cmd_name].load()
            if isinstance(command, click.Command):
                self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TopologyNotFound as exc:
            fail(str(exc.problems[0].message), EXIT_USAGE)
        except TopologyInvalid as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        except (WorkerNotFound, ContractError, NotADeadLetterQueue) as exc:
            fail(str(exc), EXIT_USAGE)
        except (BrokerUnreachable, UnsafeChange, WorkerError) as exc:
            fail(str(exc), EXIT_FAILURE)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one red line on stderr and exit with `code`."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    envvar="FLEET_LOG_FORMAT",
    show_default=True,
    help="Log lines for a terminal, or JSON for collectors; auto picks by whether stderr is a TTY.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    envvar="FLEET_LOG_LEVEL",
    show_default=True,
)
@click.version_option(package_name="fleet")
def cli(log_format: str, log_level: str) -> None:
    """fleet: event-based integration on RabbitMQ.

    Producers publish business facts to exchanges; workers consume them, act,
    and publish follow-on facts. The topology file describes it all.
    """
    configure_logging(log_format, log_level)  # type: ignore[arg-type]
    # A project's modules import from its directory, as in comparable tools.
    use_project_paths()


def _register_commands() -> None:
    """Import every command module and plugin (for tests that invoke `cli` directly)."""
    for module in COMMANDS.values():
        importlib.import_module(module)
    ctx = click.Context(cli)
    for name in plugins():
        cli.get_command(ctx, name)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fleet")
