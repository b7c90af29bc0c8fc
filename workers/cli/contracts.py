"""`fleet contracts`: the events this fleet knows, and their JSON Schemas.

The reference saga's contracts (`contracts.fulfilment`) are imported here so
they are registered before any command reads the registry.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, get_args, get_origin

import click
import msgspec

import contracts.fulfilment  # noqa: F401  (registers the reference saga's contracts)
from contracts import Event, default_registry, json_schema
from workers.cli import cli

_GROUP_EPILOG = """\b
Examples:
  fleet contracts list
  fleet contracts list --json | jq '.[].type'
  fleet contracts schema OrderPlaced > order-placed.schema.json
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


@contracts_group.command("list", epilog=_LIST_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_contracts(as_json: bool) -> None:
    """List every registered contract.

    One row each: wire name, version, routing key and fields; a field marked
    `?` is optional (it has a default). `--json` adds each field's type and
    the contract's description.
    """
    rows = [_summary(event_type) for event_type in default_registry]
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
def schema(name: str, version: int | None) -> None:
    """Print the JSON Schema of contract NAME.

    NAME is the wire name (the `type` property). The schema is JSON Schema
    2020-12; it carries fleet's wire metadata under `x-fleet`: the `type`
    property, the `version` header and the routing key.
    """
    if version is None:
        versions = [t.__version__ for t in default_registry if t.__wire_name__ == name]
        # An unknown name raises UnknownEventType, listing the known ones (exit 2).
        version = max(versions) if versions else 1
    event_type = default_registry.lookup(name, version)
    click.echo(json.dumps(json_schema(event_type), indent=2, ensure_ascii=False))


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
