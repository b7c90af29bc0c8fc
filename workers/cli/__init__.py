"""The `fleet` command: one click group per noun, one module each.

Exit codes: 0 ok, 1 failure (broker unreachable, work failed, changes pending
where a command says so), 2 usage (a mistake in the command or its input).
A mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from contracts import ContractError
from topology import BrokerUnreachable, TopologyInvalid, UnsafeChange
from workers.errors import NotADeadLetterQueue, WorkerError, WorkerNotFound
from workers.runtime.logging import configure_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


#: Command modules, imported only when their command runs: `fleet worker run`
#: then never loads the HTTP client, the database driver or the other commands.
COMMANDS = {
    "contracts": "workers.cli.contracts",
    "demo": "workers.cli.demo",
    "dlq": "workers.cli.dlq",
    "ingress": "workers.cli.ingress",
    "publish": "workers.cli.publish",
    "saga": "workers.cli.saga",
    "standins": "workers.cli.standins",
    "status": "workers.cli.status",
    "topology": "workers.cli.topology",
    "up": "workers.cli.up",
    "webhooks": "workers.cli.webhooks",
    "worker": "workers.cli.worker",
}


class FleetGroup(click.Group):
    """A group that turns fleet's errors into one line on stderr and a meaningful exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])  # the module adds itself to `cli`
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TopologyInvalid as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        except (WorkerNotFound, ContractError, NotADeadLetterQueue) as exc:
            fail(str(exc), EXIT_USAGE)
        except (BrokerUnreachable, UnsafeChange, WorkerError) as exc:
            fail(str(exc), EXIT_FAILURE)


def fail(message: str, code: int = EXIT_FAILURE) -> None:
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


def _register_commands() -> None:
    """Import every command module (for tests that invoke `cli` directly)."""
    for module in COMMANDS.values():
        importlib.import_module(module)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="fleet")
