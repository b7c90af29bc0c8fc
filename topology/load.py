"""YAML → Topology, reporting every mistake with its path in the file.

Each exchange, queue and worker is converted on its own, so one bad entry does
not hide the problems of the next; reference checks then run over the whole.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import msgspec
import yaml

from topology.check import check_references
from topology.duration import Duration
from topology.errors import TopologyInvalid
from topology.model import (
    Access,
    Broker,
    Exchange,
    Ingress,
    IngressLimits,
    IngressRoute,
    Metrics,
    ModuleName,
    OutboxSpec,
    ProcessSpec,
    Queue,
    SagaSpec,
    Topology,
    WebhookSubscription,
    WorkerSpec,
)
from topology.nodes import split_urls
from topology.problems import Problem, errors
from topology.rate import Rate
from topology.size import ByteSize
from topology.stream_start import StreamStart

S = TypeVar("S", bound=msgspec.Struct)
_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "exchanges": Exchange,
    "queues": Queue,
    "workers": WorkerSpec,
    "webhooks": WebhookSubscription,
    "processes": ProcessSpec,
    "sagas": SagaSpec,
}
#: Top-level keys besides the name → spec sections.
_OTHER_KEYS = ("version", "contracts", "ingress", "metrics", "broker", "access", "outbox")

#: The file a project keeps its topology in, found in the working directory.
PROJECT_FILE = "fleet.yaml"


class TopologyNotFound(TopologyInvalid):
    """No topology file was named and the working directory holds none."""


def find_file(path: str | os.PathLike[str] | None = None) -> Path:
    """The topology file to read: `path` when given (the CLI passes ``--file`` or
    FLEET_TOPOLOGY), else ``./fleet.yaml`` in the working directory.

    Raises:
        TopologyNotFound: no path was given and the working directory has no fleet.yaml.
    """
    if path is not None:
        return Path(path)
    found = Path.cwd() / PROJECT_FILE
    if not found.is_file():
        raise TopologyNotFound(
            str(found),
            [
                Problem(
                    "",
                    f"no topology file: there is no {PROJECT_FILE} in {Path.cwd()}; run fleet "
                    "in a project's directory, pass --file or set FLEET_TOPOLOGY "
                    "(`fleet new DIR` makes a project)",
                )
            ],
        )
    return found


def load(path: str | os.PathLike[str] | None = None) -> Topology:
    """Read and validate a topology file (default: ``./fleet.yaml``, see `find_file`).

    Raises:
        TopologyInvalid: with every problem found, each naming its path.
    """
    source = find_file(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyInvalid(
            str(source), [Problem("", f"cannot read file: {exc.strerror}")]
        ) from None
    return loads(text, source=str(source))


def loads(text: str, source: str = "<topology>") -> Topology:
    """Validate topology YAML given as text; see `load`."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise TopologyInvalid(source, [_yaml_problem(exc)]) from None
    if data is None:
        raise TopologyInvalid(
            source,
            [Problem("", "the file is empty: declare at least one exchange, queue or worker")],
        )
    topology, problems = _convert(data)
    if topology is not None:
        problems += check_references(topology)
    if errors(problems) or topology is None:
        raise TopologyInvalid(source, errors(problems))
    return topology


def _convert(data: object) -> tuple[Topology | None, list[Problem]]:
    if not isinstance(data, Mapping):
        return None, [Problem("", f"expected a mapping at the top level, got {_kind(data)}")]
    problems: list[Problem] = []
    for key in data:
        if key not in (*_SECTIONS, *_OTHER_KEYS):
            valid = ", ".join(["version", *_SECTIONS, *_OTHER_KEYS[1:]])
            problems.append(Problem(str(key), f"unknown section (valid: {valid})"))
    if data.get("version", 1) != 1:
        problems.append(Problem("version", f"unsupported version {data['version']!r} (valid: 1)"))
    sections: dict[str, dict[str, Any]] = {}
    for section, spec in _SECTIONS.items():
        sections[section] = _convert_section(section, data.get(section) or {}, spec, problems)
    topology = Topology(
        contracts=_convert_contracts(data.get("contracts") or [], problems),
        processes=sections["processes"],
        sagas=sections["sagas"],
        exchanges=sections["exchanges"],
        queues=sections["queues"],
        workers=sections["workers"],
        webhooks=sections["webhooks"],
        ingress=_convert_ingress(data.get("ingress") or {}, problems),
        metrics=_convert_metrics(data.get("metrics") or {}, problems),
        broker=_convert_broker(data.get("broker") or {}, problems),
        access=_convert_access(data.get("access") or {}, problems),
        outbox=_convert_outbox(data.get("outbox"), problems),
    )
    return topology, problems


def _convert_contracts(data: object, problems: list[Problem]) -> list[str]:
    try:
        return msgspec.convert(data, list[ModuleName])
    except msgspec.ValidationError as exc:
        detail, _, at = str(exc).partition(" - at `$")
        detail = detail.replace("`", "'")
        problems.append(
            Problem(
                "contracts" + at.rstrip("`"),
                f"{detail[:1].lower()}{detail[1:]}: list the modules holding the contracts, "
                "like [shop.contracts]",
            )
        )
        return []


def _convert_access(data: object, problems: list[Problem]) -> Access:
    try:
        return msgspec.convert(data, Access)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem("access", Access, str(exc)))
        return Access()


def _convert_outbox(data: object, problems: list[Problem]) -> OutboxSpec | None:
    if data is None:
        return None
    try:
        return msgspec.convert(data, OutboxSpec, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem("outbox", OutboxSpec, str(exc)))
        return None


def _convert_metrics(data: object, problems: list[Problem]) -> Metrics:
    try:
        return msgspec.convert(data, Metrics, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem("metrics", Metrics, str(exc)))
        return Metrics()


def _convert_broker(data: object, problems: list[Problem]) -> Broker:
    """`broker:` names the nodes (`urls`) and the quorum replica count."""
    try:
        broker = msgspec.convert(data, Broker)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem("broker", Broker, str(exc)))
        return Broker()
    for i, url in enumerate(broker.urls):
        try:
            split_urls(url)
        except ValueError as exc:
            problems.append(Problem(f"broker.urls[{i}]", str(exc)))
    return broker


def _convert_ingress(data: object, problems: list[Problem]) -> Ingress:
    """`ingress:` holds `routes:`, converted route by route like the other sections,
    and `limits:`."""
    if not isinstance(data, Mapping):
        problems.append(Problem("ingress", f"expected a mapping with 'routes', got {_kind(data)}"))
        return Ingress()
    for key in data:
        if key not in ("routes", "limits"):
            problems.append(Problem(f"ingress.{key}", "unknown field (valid: routes, limits)"))
    limits = IngressLimits()
    try:
        limits = msgspec.convert(data.get("limits") or {}, IngressLimits, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        problems.append(_validation_problem("ingress.limits", IngressLimits, str(exc)))
    routes: dict[str, IngressRoute] = {}
    entries = data.get("routes") or {}
    if not isinstance(entries, Mapping):
        problems.append(
            Problem("ingress.routes", f"expected a mapping of path to route, got {_kind(entries)}")
        )
        return Ingress(limits=limits)
    for path, body in entries.items():
        where = f"ingress.routes.{path}"
        if not isinstance(path, str) or not path:
            problems.append(Problem(where, "paths must be non-empty strings"))
            continue
        try:
            routes[path] = msgspec.convert(
                body if body is not None else {}, IngressRoute, dec_hook=_dec_hook
            )
        except msgspec.ValidationError as exc:
            problems.append(_validation_problem(where, IngressRoute, str(exc)))
    return Ingress(routes=routes, limits=limits)


def _convert_section(
    section: str, entries: object, spec: type[S], problems: list[Problem]
) -> dict[str, S]:
    if not isinstance(entries, Mapping):
        problems.append(
            Problem(section, f"expected a mapping of name to {spec.__name__}, got {_kind(entries)}")
        )
        return {}
    converted: dict[str, S] = {}
    for name, body in entries.items():
        path = f"{section}.{name}"
        if not isinstance(name, str) or not name:
            problems.append(Problem(path, "names must be non-empty strings"))
            continue
        try:
            converted[name] = msgspec.convert(
                body if body is not None else {}, spec, dec_hook=_dec_hook
            )
        except msgspec.ValidationError as exc:
            problems.append(
                _keyed_problem(path, spec, body, str(exc))
                or _validation_problem(path, spec, str(exc))
            )
            if spec in (Exchange, Queue):
                # A stand-in keeps the name known, so the reference checks that
                # follow still run without reporting it as missing.
                converted[name] = spec()
    return converted


def _dec_hook(target: type, value: Any) -> Any:
    if target is Duration:
        return Duration.parse(value)
    if target is ByteSize:
        return ByteSize.parse(value)
    if target is Rate:
        return Rate.parse(value)
    if target is StreamStart:
        return StreamStart.parse(value)
    raise NotImplementedError(f"unsupported type {target!r}")


def _keyed_problem(prefix: str, spec: type, body: object, message: str) -> Problem | None:
    """msgspec writes a mapping's value as `[...]` (`$.handler_rates[...].rate`): find
    which key by converting each value alone, so the problem names it."""
    field, marked, _ = message.partition(" - at `$.")[2].partition("[...]")
    if not marked or not field.isidentifier() or not isinstance(body, Mapping):
        return None
    entries = body.get(field)
    hint = get_type_hints(spec).get(field)
    if not isinstance(entries, Mapping) or get_origin(hint) is not dict:
        return None
    value_type = get_args(hint)[1]
    for key, value in entries.items():
        try:
            msgspec.convert(value, value_type, dec_hook=_dec_hook)
        except msgspec.ValidationError as exc:
            return _validation_problem(f"{prefix}.{field}.{key}", value_type, str(exc))
    return None


def _validation_problem(prefix: str, spec: type, message: str) -> Problem:
    """msgspec's ``Expected `int` - at `$.bind[0].x` `` → a Problem with the full path."""
    detail, _, at = message.partition(" - at `$")
    inner = at.rstrip("`")
    path = prefix + inner
    detail = detail.replace("`", "'")
    detail = detail[:1].lower() + detail[1:]
    target = _resolve(spec, inner)
    if detail.startswith("invalid enum value") and target is not None:
        choices = _choices(target)
        if choices:
            detail += f" (valid: {', '.join(choices)})"
    elif (
        detail.startswith("object contains unknown field")
        and isinstance(target, type)
        and issubclass(target, msgspec.Struct)
    ):
        detail += f" (valid: {', '.join(target.__struct_fields__)})"
    return Problem(path, detail)


def _choices(target: Any) -> list[str]:
    """The values a Literal allows; for a union, those of its Literals and its numbers."""
    if get_origin(target) is Literal:
        return [str(choice) for choice in get_args(target)]
    if get_origin(target) not in (typing.Union, types.UnionType):
        return []
    choices: list[str] = []
    for member in get_args(target):
        member = _strip(member)
        if member is int:
            choices.append("a whole number")
        else:
            choices += _choices(member)
    return choices


def _resolve(spec: Any, path: str) -> Any:
    """Follow a msgspec path (``.bind[0].exchange``) through type annotations."""
    current = spec
    for token in _tokens(path):
        current = _strip(current)
        if token.startswith("["):
            args = get_args(current)
            current = args[-1] if args else None
        elif isinstance(current, type) and issubclass(current, msgspec.Struct):
            current = typing.get_type_hints(current).get(token)
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    return _strip(current)


def _strip(tp: Any) -> Any:
    """Annotated[int, ...] → int; X | None → X."""
    while True:
        if get_origin(tp) is typing.Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (typing.Union, types.UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _tokens(path: str) -> list[str]:
    tokens: list[str] = []
    for part in path.replace("[", ".[").split("."):
        if part:
            tokens.append(part)
    return tokens


def _kind(value: object) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "nothing",
    }.get(type(value), type(value).__name__)


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"{context}: {what}" if context else str(what)
    return Problem(where, f"invalid YAML: {message}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which plain YAML silently overwrites."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate name {key!r} (first defined on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
