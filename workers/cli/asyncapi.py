"""`fleet asyncapi`: the whole fleet as an AsyncAPI 3.0 document.

Like `fleet topology check`, it imports the workers' modules: what each
handler takes and emits comes from the code, the rest from the topology file.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import click
import yaml

from topology import Topology, load
from workers.asyncapi import asyncapi_document
from workers.cli import EXIT_FAILURE, cli, fail
from workers.cli.options import file_option
from workers.flows import FleetFlows, fleet_flows
from workers.loader import load_workers
from workers.project import register_contracts

_EPILOG = """\b
Examples:
  fleet asyncapi > asyncapi.yaml
  fleet asyncapi --format json --output asyncapi.json
  fleet asyncapi --file examples/fulfilment/fleet.yaml --output fulfilment.asyncapi.yaml
"""


@cli.command("asyncapi", epilog=_EPILOG)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
    help="The document's format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write the document to this file instead of standard output.",
)
@file_option
def asyncapi(output_format: str, output: str | None, topology_file: str | None) -> None:
    """Describe the whole fleet as an AsyncAPI 3.0 document.

    Channels are the exchanges and queues, with AMQP bindings; operations are
    what each worker receives and sends, each ingress route's publish and each
    webhook subscription's deliveries; messages are every contract version,
    with its JSON Schema, headers and an example. Retry tiers, dead-letter
    queues, delivery limits, terminal events, faults, ingress auth and webhook
    subscriptions are x-fleet-* extensions (see the manual's "Catalogue and
    AsyncAPI" page).

    \b
    Exit status:
      0  the document was written
      1  a worker's module cannot be imported
      2  the topology file is invalid, or names a contract no module defines
    """
    topology = load(topology_file)
    flows = load_flows(topology)
    title, version = project_identity(topology_file)
    document = asyncapi_document(topology, flows, title=title, version=version)
    if output_format == "json":
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    click.echo(
        f"wrote {output}: {len(document['channels'])} channels, "
        f"{len(document['operations'])} operations, "
        f"{len(document['components']['messages'])} messages",
        err=True,
    )


def load_flows(topology: Topology) -> FleetFlows:
    """Import the topology's workers and contracts, and say who sends and receives what;
    a worker that cannot be imported ends the command (exit 1), naming each."""
    workers, problems = load_workers(topology)
    if problems:
        fail("; ".join(str(p) for p in problems), EXIT_FAILURE)
    registry = register_contracts(topology, workers)
    return fleet_flows(topology, workers, registry)


def project_identity(topology_file: str | None) -> tuple[str, str]:
    """The project's name and version, from the pyproject.toml beside its topology file;
    else the folder's name and 0.0.0."""
    folder = Path(topology_file).parent if topology_file else Path.cwd()
    name, version = folder.resolve().name, "0.0.0"
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            project = {}
        name = str(project.get("name", name))
        version = str(project.get("version", version))
    return name, version
