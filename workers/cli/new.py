"""`fleet new DIR`: a project of a team's own, ready to commit, test and run."""

from __future__ import annotations

from pathlib import Path

import click

from workers.cli import EXIT_USAGE, cli, fail
from workers.scaffold import ScaffoldError, create, package_name

EXAMPLES = """
\b
Examples:
  fleet new shop                   # ./shop, with its code in the package `shop`
  fleet new billing-sync --package billing
  cd shop && fleet topology check && fleet topology apply && fleet worker run welcome
"""


@cli.command("new", epilog=EXAMPLES)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--package",
    default=None,
    help="The project's Python package; default: DIRECTORY's name (my-shop → my_shop).",
)
def new(directory: Path, package: str | None) -> None:
    """Make a new project in DIRECTORY (missing or empty).

    It holds a fleet.yaml, a package with one contract module and one worker,
    a test of that worker (alone, and end to end on a real broker), a
    pyproject.toml that depends on fleet, a compose.yaml for RabbitMQ and
    PostgreSQL, and a README of its own. Every fleet command then works inside
    DIRECTORY with no environment variables.
    """
    try:
        written = create(directory, package)
    except ScaffoldError as exc:
        fail(str(exc), EXIT_USAGE)
    exchange = package or package_name(directory)
    click.echo(f"Made {directory} ({len(written)} files). Next:\n")
    click.echo(f"  cd {directory}")
    click.echo("  fleet topology check          # the file against the code")
    click.echo("  fleet topology apply          # exchanges, queues, retry and dead-letter queues")
    click.echo("  fleet worker run welcome      # consume (Ctrl-C stops it gracefully)")
    click.echo(
        f"  fleet publish {exchange} customer.signed_up --type CustomerSignedUp \\\n"
        """      --json '{"customer_id": "c-1", "email": "ada@example.com"}'"""
    )
    click.echo("  pytest                        # its tests, alone and on the broker")
