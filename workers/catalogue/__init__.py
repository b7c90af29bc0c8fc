"""The contract catalogue people read: `fleet contracts docs`, and the manual's page
of the reference fleet's contracts.

For each contract, newest version first: its fields (from its JSON Schema: the
wire names, types and bounds a producer in any language needs), the Structs it
nests, what changed since the version before (`contracts.changes`), who emits
it and who consumes it (`workers.flows`: the workers' handlers, the ingress
routes, the webhook subscriptions), and an example body that decodes into it
(`contracts.examples`). It is built from the same sources as `fleet asyncapi`,
so the two cannot disagree, and neither can drift from the code.

`build_catalogue` makes the model (pure); `workers.catalogue.render` turns it
into HTML with Jinja2 templates that escape every value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from contracts import Event, json_schema
from contracts.changes import FieldChange, field_changes
from contracts.examples import ExampleUnavailable, example
from contracts.faults import is_fault
from topology import Topology
from workers.flows import FleetFlows, Flow

PartyKind = Literal["worker", "ingress", "webhook"]


@dataclass(frozen=True)
class FieldDoc:
    """One field as it travels: wire name, JSON type, bounds, default, description."""

    name: str
    type: str
    required: bool
    default: str | None
    constraints: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class StructDoc:
    """A Struct a contract nests (``OrderLine``), with its fields."""

    name: str
    description: str
    fields: tuple[FieldDoc, ...]


@dataclass(frozen=True)
class Party:
    """A process that emits or consumes a contract, and how (``to exchange inventory``)."""

    kind: PartyKind
    name: str
    how: str

    @property
    def label(self) -> str:
        """The party in a list of names: ``inventory``, ``POST /orders``, ``crm webhook``."""
        return f"{self.name} webhook" if self.kind == "webhook" else self.name


@dataclass(frozen=True)
class VersionDoc:
    """One version of a contract."""

    version: int
    anchor: str
    summary: str
    description: str
    routing_key: str
    fields: tuple[FieldDoc, ...]
    structs: tuple[StructDoc, ...]
    #: What changed from the version before; None for the first version listed.
    changes: tuple[FieldChange, ...] | None
    previous: int | None
    emitted_by: tuple[Party, ...]
    consumed_by: tuple[Party, ...]
    #: The example body as indented JSON, or why there is none.
    example: str | None
    example_error: str | None
    schema: str


@dataclass(frozen=True)
class ContractDoc:
    """A contract (one wire name), its versions newest first."""

    name: str
    anchor: str
    routing_key: str
    versions: tuple[VersionDoc, ...]
    #: For a Fault[...]: the wire name of the contract it is about.
    fault_of: str | None


@dataclass(frozen=True)
class Catalogue:
    title: str
    version: str
    contracts: tuple[ContractDoc, ...]


def build_catalogue(
    topology: Topology, flows: FleetFlows, *, title: str, version: str
) -> Catalogue:
    """The catalogue of every contract the flows know, faults after the others."""
    by_name: dict[str, list[type[Event]]] = {}
    for contract in flows.contracts:
        by_name.setdefault(contract.__wire_name__, []).append(contract)
    names = sorted(by_name, key=lambda n: (n.startswith("Fault["), n))
    anchors = _Anchors()
    contracts = []
    for name in names:
        versions = sorted(by_name[name], key=lambda t: t.__version__)
        base = anchors.of(name)
        docs = [
            _version(topology, flows, t, versions[i - 1] if i else None, f"{base}-v{t.__version__}")
            for i, t in enumerate(versions)
        ]
        newest = versions[-1]
        fault_of = vars(newest)["original"].__wire_name__ if is_fault(newest) else None
        contracts.append(
            ContractDoc(
                name=name,
                anchor=base,
                routing_key=newest.__routing_key__,
                versions=tuple(reversed(docs)),
                fault_of=fault_of,
            )
        )
    return Catalogue(title=title, version=version, contracts=tuple(contracts))


def _version(
    topology: Topology,
    flows: FleetFlows,
    contract: type[Event],
    previous: type[Event] | None,
    anchor: str,
) -> VersionDoc:
    schema = json_schema(contract)
    definitions: dict[str, Any] = schema.get("$defs", {})
    root = schema["$ref"].rsplit("/", 1)[-1]
    doc = _dedent((contract.__doc__ or "").strip())
    summary, _, rest = doc.partition("\n")
    try:
        sample: str | None = json.dumps(example(contract), indent=2, ensure_ascii=False)
        why = None
    except ExampleUnavailable as exc:
        sample, why = None, str(exc)
    carried = flows.of(contract)
    return VersionDoc(
        version=contract.__version__,
        anchor=anchor,
        summary=summary.strip(),
        description=rest.strip(),
        routing_key=contract.__routing_key__,
        fields=_fields(definitions[root]),
        structs=tuple(
            StructDoc(
                name=name,
                description=str(definition.get("description", "")),
                fields=_fields(definition),
            )
            for name, definition in definitions.items()
            if name != root
        ),
        changes=None if previous is None else tuple(field_changes(previous, contract)),
        previous=None if previous is None else previous.__version__,
        emitted_by=tuple(_party(topology, f, contract) for f in carried if f.action == "send"),
        consumed_by=tuple(_party(topology, f, contract) for f in carried if f.action == "receive"),
        example=sample,
        example_error=why,
        schema=json.dumps(schema, indent=2, ensure_ascii=False),
    )


def _party(topology: Topology, flow: Flow, contract: type[Event]) -> Party:
    if flow.kind == "handles":
        how = f"from queue {flow.queue}"
        if contract in flow.converted:
            how += ", through an upcaster or downcaster to the version it handles"
        return Party("worker", flow.party, how)
    if flow.kind == "emits":
        return Party("worker", flow.party, f"to exchange {flow.exchange}")
    if flow.kind == "terminal":
        return Party(
            "worker",
            flow.party,
            f"to exchange {flow.exchange}, as a terminal event (no consumer needed)",
        )
    if flow.kind == "faults":
        original = vars(contract)["original"].__wire_name__
        return Party(
            "worker", flow.party, f"to exchange {flow.exchange}, for each {original} it parks"
        )
    if flow.kind == "ingress":
        route = topology.ingress.routes[flow.party]
        auth = route.auth.type if route.auth is not None else "no auth"
        return Party("ingress", f"POST {flow.party}", f"to exchange {flow.exchange} ({auth})")
    if flow.kind == "reply":
        return Party(
            "ingress", f"POST {flow.party}", f"as its answer, from exchange {flow.exchange}"
        )
    subscription = topology.webhooks[flow.party]
    return Party("webhook", flow.party, f"from queue {flow.queue}, POSTed to {subscription.url}")


def _fields(definition: dict[str, Any]) -> tuple[FieldDoc, ...]:
    required = set(definition.get("required", []))
    return tuple(
        FieldDoc(
            name=name,
            type=schema_type(prop),
            required=name in required,
            default=json.dumps(prop["default"], ensure_ascii=False) if "default" in prop else None,
            constraints=constraints(prop),
            description=str(prop.get("description", "")),
        )
        for name, prop in definition.get("properties", {}).items()
    )


def schema_type(schema: dict[str, Any]) -> str:
    """A property's type, briefly: ``string``, ``array of OrderLine``, ``integer or null``,
    ``one of "free", "pro"``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema or "oneOf" in schema:
        return " or ".join(schema_type(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        if "prefixItems" in schema:
            return "tuple of " + ", ".join(schema_type(s) for s in schema["prefixItems"])
        items = schema.get("items")
        return f"array of {schema_type(items)}" if isinstance(items, dict) else "array"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {schema_type(schema['additionalProperties'])}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


#: JSON Schema bounds, as the catalogue words them (``{s}``: a plural's s).
_BOUNDS = {
    "minLength": "at least {} character{s}",
    "maxLength": "at most {} character{s}",
    "minimum": "≥ {}",
    "exclusiveMinimum": "> {}",
    "maximum": "≤ {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "a multiple of {}",
    "minItems": "at least {} item{s}",
    "maxItems": "at most {} item{s}",
    "minProperties": "at least {} entr{ies}",
    "maxProperties": "at most {} entr{ies}",
    "pattern": "matches {}",
    "contentEncoding": "{}-encoded",
}


def constraints(schema: dict[str, Any]) -> tuple[str, ...]:
    """A property's bounds, one phrase each (``at most 255 characters``)."""
    return tuple(
        template.format(
            schema[key],
            s="" if schema[key] == 1 else "s",
            ies="y" if schema[key] == 1 else "ies",
        )
        for key, template in _BOUNDS.items()
        if key in schema
    )


def _dedent(doc: str) -> str:
    lines = doc.splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    cut = min(indents, default=0)
    return "\n".join([*lines[:1], *(line[cut:] for line in lines[1:])])


class _Anchors:
    """HTML ids: ``Fault[OrderPlaced]`` → ``fault-orderplaced``, unique."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def of(self, name: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "contract"
        anchor, n = base, 1
        while anchor in self._taken:
            n += 1
            anchor = f"{base}-{n}"
        self._taken.add(anchor)
        return anchor
