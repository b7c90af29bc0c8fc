"""`fleet contracts`: the events this fleet knows, and their JSON Schemas.

The fleet's contracts are those of the project's topology (its `contracts:`
modules, else its workers' handlers): see `workers.project`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import click
import msgspec

from contracts import Event, Registry, json_schema
from contracts.compat import diff, dumps, lock
from topology import find_file, load
from workers import scaffold
from workers.cli import EXIT_FAILURE, EXIT_USAGE, cli, fail
from workers.cli.options import file_option
from workers.loader import import_contracts

_GROUP_EPILOG = """\b
Examples:
  fleet contracts list
  fleet contracts list --json | jq '.[].type'
  fleet contracts schema OrderPlaced > order-placed.schema.json
  fleet contracts lock && fleet contracts diff --against main
  fleet contracts docs --output site/contracts
"""

_LIST_EPILOG = """\b
Examples:
  fleet contracts list
  fleet contracts list --json
  fleet contracts list --json | jq -r '.[] | "\\(.type) \\(.routing_key)"'
"""

_SCHEMA_EPILOG = """\b
Examples:
  fleet contracts schema OrderPlaced
  fleet contracts schema OrderPlaced --version 1
  fleet contracts schema PaymentDeclined > payment-declined.schema.json
"""


@cli.group("contracts", epilog=_GROUP_EPILOG)
def contracts_group() -> None:
    """The event contracts: what travels on the wire, and its JSON Schema."""


def _registry(topology_file: str | None) -> Registry:
    return import_contracts(load(topology_file))


@contracts_group.command("list", epilog=_LIST_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@file_option
def list_contracts(as_json: bool, topology_file: str | None) -> None:
    """List the fleet's contracts: its topology's `contracts` modules, else its workers'.

    One row each: wire name, version, routing key and fields; a field marked
    `?` is optional (it has a default). `--json` adds each field's type and
    the contract's description.
    """
    rows = [_summary(event_type) for event_type in _registry(topology_file)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no contracts registered")
        return
    table = [("TYPE", "VERSION", "ROUTING KEY", "FIELDS")] + [
        (
            row["type"],
            str(row["version"]),
            row["routing_key"],
            ", ".join(f["name"] + ("" if f["required"] else "?") for f in row["fields"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)]
        click.echo("  ".join([*cells, line[3]]))


@contracts_group.command("schema", epilog=_SCHEMA_EPILOG)
@click.argument("name")
@click.option(
    "--version",
    "version",
    type=click.IntRange(min=1),
    default=None,
    help="Schema version; default: the newest registered under NAME.",
)
@file_option
def schema(name: str, version: int | None, topology_file: str | None) -> None:
    """Print the JSON Schema of contract NAME.

    NAME is the wire name (the `type` property). The schema is JSON Schema
    2020-12; it carries fleet's wire metadata under `x-fleet`: the `type`
    property, the `version` header and the routing key.
    """
    registry = _registry(topology_file)
    if version is None:
        versions = [t.__version__ for t in registry if t.__wire_name__ == name]
        # An unknown name raises UnknownEventType, listing the known ones (exit 2).
        version = max(versions) if versions else 1
    event_type = registry.lookup(name, version)
    click.echo(json.dumps(json_schema(event_type), indent=2, ensure_ascii=False))


_DOCS_EPILOG = """\b
Examples:
  fleet contracts docs
  fleet contracts docs --output site/contracts && open site/contracts/index.html
  fleet contracts docs --file examples/fulfilment/fleet.yaml --output /tmp/catalogue
"""


@contracts_group.command("docs", epilog=_DOCS_EPILOG)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False),
    default="contracts-docs",
    show_default=True,
    help="Directory to write index.html into (made if missing).",
)
@file_option
def docs(output: str, topology_file: str | None) -> None:
    """Write the fleet's contract catalogue as one HTML page, DIR/index.html.

    For each contract, newest version first: its fields with their JSON types
    and bounds, the Structs it nests, the fields added, removed or changed
    since the version before, who emits it and who consumes it (the workers'
    handlers, the ingress routes, the webhook subscriptions), an example body
    that decodes into it, and its JSON Schema. Like `fleet asyncapi`, it
    imports the workers' modules.

    \b
    Exit status:
      0  the catalogue was written
      1  a worker's module cannot be imported
      2  the topology file is invalid, or names a contract no module defines
    """
    from workers.catalogue import build_catalogue
    from workers.catalogue.render import render_page
    from workers.cli.asyncapi import load_flows, project_identity

    topology = load(topology_file)
    title, version = project_identity(topology_file)
    catalogue = build_catalogue(topology, load_flows(topology), title=title, version=version)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "index.html"
    page.write_text(render_page(catalogue), encoding="utf-8")
    click.echo(f"wrote {page}: {len(catalogue.contracts)} contracts")


def _summary(event_type: type[Event]) -> dict[str, Any]:
    """One contract as `list --json` prints it."""
    doc = (event_type.__doc__ or "").strip().splitlines()
    return {
        "type": event_type.__wire_name__,
        "version": event_type.__version__,
        "routing_key": event_type.__routing_key__,
        "description": doc[0] if doc else "",
        "fields": [
            {
                "name": field.encode_name,
                "type": _type_name(field.type),
                "required": field.required,
            }
            for field in msgspec.structs.fields(event_type)
        ],
    }


def _type_name(tp: Any) -> str:
    """``Annotated[list[OrderLine], Meta(...)]`` → ``list[OrderLine]``: a field's type, briefly."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(tp))
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in get_args(tp))
    if origin is not None:
        args = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "None"
    return str(getattr(tp, "__name__", tp))


#: The file `lock` writes and `diff` compares with, beside the topology file.
LOCK_FILE = scaffold.LOCK_FILE

_LOCK_EPILOG = """\b
Examples:
  fleet contracts lock                       # writes contracts.lock.json beside fleet.yaml
  git add contracts.lock.json && git commit -m "Lock the contracts"
"""

_DIFF_EPILOG = """\b
Examples:
  fleet contracts diff                       # the code against contracts.lock.json
  fleet contracts diff --against main        # against the lock on another git ref
  fleet contracts diff --against old.lock.json
\b
Exit status: 0 no breaking change, 1 a breaking change, 2 usage.
"""


def _lock_path(topology_file: str | None) -> Path:
    return find_file(topology_file).resolve().parent / LOCK_FILE


@contracts_group.command("lock", epilog=_LOCK_EPILOG)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write the lock (default: {LOCK_FILE} beside the topology file).",
)
@file_option
def lock_command(output: Path | None, topology_file: str | None) -> None:
    """Write the JSON Schema of every contract version to a file the project commits.

    `fleet contracts diff` then tells what a change to the contracts breaks.
    """
    path = output or _lock_path(topology_file)
    registry = _registry(topology_file)
    path.write_text(dumps(lock(registry)))
    versions = len(list(registry))
    click.echo(f"Locked {versions} contract version(s) in {path}.")


@contracts_group.command("diff", epilog=_DIFF_EPILOG)
@click.option(
    "--against",
    default=None,
    metavar="FILE|GIT-REF",
    help=f"The lock to compare with: a file, or a git ref whose {LOCK_FILE} is read "
    f"(default: {LOCK_FILE} beside the topology file).",
)
@file_option
def diff_command(against: str | None, topology_file: str | None) -> None:
    """Classify each change of the contracts since the lock as compatible or breaking.

    Breaking: a version removed, its routing key changed, a field removed, a
    field added without a default or made required, a type narrowed, an enum
    value removed, a constraint tightened, a new version without an upcaster
    from the previous one. The same change as a new version with an upcaster
    is compatible. The rules: docs/concepts/contracts.md.
    """
    path = _lock_path(topology_file)
    old = _read_lock(path, against)
    changes = diff(old, lock(_registry(topology_file)))
    if not changes:
        click.echo("No change since the lock.")
        return
    for change in changes:
        click.secho(str(change), fg="red" if change.kind == "breaking" else None)
    breaking = sum(c.kind == "breaking" for c in changes)
    click.echo(f"\n{len(changes)} change(s), {breaking} breaking.")
    if breaking:
        sys.exit(EXIT_FAILURE)


def _read_lock(path: Path, against: str | None) -> dict[str, Any]:
    """The lock to compare with: `against` as a file, else as a git ref, else `path`."""
    source = Path(against) if against is not None else path
    if against is None or source.is_file():
        try:
            text = source.read_text()
        except OSError:
            fail(
                f"no lock at {source}: run `fleet contracts lock` and commit it first",
                EXIT_USAGE,
            )
    else:
        shown = subprocess.run(
            ["git", "show", f"{against}:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            text=True,
        )
        if shown.returncode != 0:
            detail = shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else ""
            fail(f"cannot read {path.name} at git ref {against!r}: {detail}", EXIT_USAGE)
        text = shown.stdout
    try:
        locked: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        fail(f"the lock {against or source} is not JSON: {exc}", EXIT_USAGE)
    return locked
