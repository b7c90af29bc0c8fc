"""The compatibility gate: every contract version's JSON Schema locked in a file the
project commits, and each change since classified as compatible or breaking.

A version is a promise to everyone who produces or consumes it, so a change
to an existing version must keep every message valid before valid after, and
every consumer able to read what producers now send. The rules, per locked
version (paths in msgspec's syntax: ``$.lines[].qty``):

    breaking                                   compatible
    a version removed                          a new contract, or a new version
    the routing key changed                       with an upcaster from the previous
    a new version with no upcaster from        a field added with a default
      the previous one                         a field made optional
    a field removed                            a type widened (int → int | str)
    a field added without a default            an enum value added
    a field made required                      a constraint loosened or removed
    a type narrowed (int | str → int,          a description changed
      number → integer, null refused)
    an enum value removed
    a constraint tightened (a minimum raised, a maximum lowered, a bound,
      pattern or format added, a pattern or format changed)

A breaking change belongs in a new version, with an upcaster from the old one
(`contracts.evolution`): the old version's schema then stays as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from contracts.event import Event
from contracts.evolution import Evolution, default_evolution
from contracts.schema import json_schema

#: The lock file's format, written in it so a later fleet can read an older lock.
LOCK_FORMAT = 1

Kind = Literal["breaking", "compatible"]

#: Lower bounds: raising one refuses what was valid.
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
#: Upper bounds: lowering one refuses what was valid.
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
#: Constraints that change what is valid however they change.
_EXACT = ("pattern", "format", "const", "multipleOf")


@dataclass(frozen=True, order=True)
class Change:
    """One difference between the locked contracts and the code's."""

    kind: Kind
    contract: str
    version: int
    path: str
    what: str

    def __str__(self) -> str:
        where = f"{self.contract} v{self.version}" + (f" {self.path}" if self.path else "")
        return f"{self.kind:<10}  {where}: {self.what}"


def lock(
    contracts: Iterable[type[Event]], evolution: Evolution = default_evolution
) -> dict[str, Any]:
    """The lock of `contracts`: each version's routing key, JSON Schema and whether an
    upcaster leads to it from the previous version. Deterministic (sorted keys)."""
    locked: dict[str, dict[str, Any]] = {}
    for event_type in sorted(contracts, key=lambda t: (t.__wire_name__, t.__version__)):
        name, version = event_type.__wire_name__, event_type.__version__
        upcast = version > 1 and evolution.up_from(name, version - 1) is not None
        locked.setdefault(name, {})[str(version)] = {
            "routing_key": event_type.__routing_key__,
            "upcast_from_previous": upcast,
            "schema": json_schema(event_type),
        }
    return {"format": LOCK_FORMAT, "contracts": locked}


def dumps(locked: Mapping[str, Any]) -> str:
    """The lock as the file holds it: indented, sorted, one trailing newline."""
    return json.dumps(locked, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change from lock `old` to lock `new`, breaking ones first."""
    changes: list[Change] = []
    before, after = old.get("contracts", {}), new.get("contracts", {})
    for name in sorted(set(before) | set(after)):
        old_versions, new_versions = before.get(name, {}), after.get(name, {})
        for version in sorted(set(old_versions) | set(new_versions), key=int):
            was, now = old_versions.get(version), new_versions.get(version)
            number = int(version)
            if now is None:
                changes.append(Change("breaking", name, number, "", "the version was removed"))
            elif was is None:
                changes.append(_added(name, number, now, known=bool(old_versions)))
            else:
                changes += _version_changes(name, number, was, now)
    return sorted(changes)


def _added(name: str, version: int, now: Mapping[str, Any], *, known: bool) -> Change:
    if not known or version == 1:
        return Change("compatible", name, version, "", "a new contract")
    if now.get("upcast_from_previous"):
        return Change("compatible", name, version, "", f"a new version, upcast from v{version - 1}")
    return Change(
        "breaking",
        name,
        version,
        "",
        f"a new version with no upcaster from v{version - 1}: messages of v{version - 1} "
        f"cannot reach its handlers (add an @upcaster)",
    )


def _version_changes(
    name: str, version: int, was: Mapping[str, Any], now: Mapping[str, Any]
) -> list[Change]:
    changes = []
    before, after = was.get("routing_key"), now.get("routing_key")
    if before != after:
        what = f"routing key changed from {before!r} to {after!r}"
        changes.append(Change("breaking", name, version, "", what))
    schemas = _Schemas(was["schema"], now["schema"])
    for kind, path, what in schemas.compare(was["schema"], now["schema"], "$"):
        changes.append(Change(kind, name, version, path, what))
    return changes


class _Schemas:
    """Walks two versions of one schema side by side (their `$defs` resolved)."""

    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any]):
        self.old_defs = old.get("$defs", {})
        self.new_defs = new.get("$defs", {})
        self._seen: set[tuple[str, str, str]] = set()

    def compare(self, old: Any, new: Any, path: str) -> list[tuple[Kind, str, str]]:
        old, new = self._resolve(old, self.old_defs), self._resolve(new, self.new_defs)
        key = (json.dumps(old, sort_keys=True)[:200], json.dumps(new, sort_keys=True)[:200], path)
        if key in self._seen:  # a recursive contract
            return []
        self._seen.add(key)
        found: list[tuple[Kind, str, str]] = []
        found += _types(old, new, path)
        found += _enums(old, new, path)
        found += _constraints(old, new, path)
        if "properties" in old or "properties" in new:
            found += self._fields(old, new, path)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            found += self.compare(old["items"], new["items"], path + "[]")
        old_values, new_values = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_values, dict) and isinstance(new_values, dict):
            found += self.compare(old_values, new_values, path + "{}")
        old_branches, new_branches = _branches(old), _branches(new)
        if (
            len(old_branches) == 1
            and len(new_branches) == 1
            and (old_branches, new_branches)
            != (
                [old],
                [new],
            )
        ):
            found += self.compare(old_branches[0], new_branches[0], path)
        return found

    def _fields(self, old: Any, new: Any, path: str) -> list[tuple[Kind, str, str]]:
        found: list[tuple[Kind, str, str]] = []
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for field in sorted(set(old_fields) | set(new_fields)):
            where = f"{path}.{field}"
            if field not in new_fields:
                found.append(("breaking", where, "the field was removed"))
            elif field not in old_fields:
                if field in new_required:
                    found.append(("breaking", where, "a field added without a default"))
                else:
                    found.append(("compatible", where, "a field added with a default"))
            else:
                if field in new_required and field not in old_required:
                    found.append(
                        ("breaking", where, "the field became required (its default removed)")
                    )
                elif field in old_required and field not in new_required:
                    found.append(("compatible", where, "the field became optional"))
                found += self.compare(old_fields[field], new_fields[field], where)
        return found

    def _resolve(self, schema: Any, defs: Mapping[str, Any]) -> Any:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return schema if isinstance(schema, dict) else {}


def _branches(schema: Mapping[str, Any]) -> list[Any]:
    """The non-null alternatives of a schema (itself when it has none)."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema]
    return [o for o in options if o != {"type": "null"}]


def _type_set(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a schema accepts ("integer" counted inside "number")."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return set().union(*(_type_set(o) for o in options))
    kind = schema.get("type")
    if kind is None:
        if "enum" in schema or "const" in schema:
            values = schema.get("enum", [schema.get("const")])
            return {_json_type(v) for v in values}
        return {"object"} if "properties" in schema or "$ref" in schema else {"any"}
    kinds = {kind} if isinstance(kind, str) else set(kind)
    return kinds | ({"integer"} if "number" in kinds else set())


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _types(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str
) -> list[tuple[Kind, str, str]]:
    before, after = _type_set(old), _type_set(new)
    if before == after or "any" in after:
        return []
    if "any" in before or not before <= after:
        lost = ", ".join(sorted(before - after)) or "some values"
        return [("breaking", path, f"the type was narrowed: {lost} no longer accepted")]
    return [
        ("compatible", path, f"the type was widened: {', '.join(sorted(after - before))} accepted")
    ]


def _enums(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str
) -> list[tuple[Kind, str, str]]:
    if "enum" not in old or "enum" not in new:
        return []
    removed = [v for v in old["enum"] if v not in new["enum"]]
    added = [v for v in new["enum"] if v not in old["enum"]]
    found: list[tuple[Kind, str, str]] = []
    if removed:
        found.append(("breaking", path, f"enum value(s) removed: {', '.join(map(repr, removed))}"))
    if added:
        found.append(("compatible", path, f"enum value(s) added: {', '.join(map(repr, added))}"))
    return found


def _constraints(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str
) -> list[tuple[Kind, str, str]]:
    found: list[tuple[Kind, str, str]] = []
    for bound, tighter in [*((b, _raised) for b in _LOWER), *((b, _lowered) for b in _UPPER)]:
        was, now = old.get(bound), new.get(bound)
        if was == now:
            continue
        if now is None:
            found.append(("compatible", path, f"{bound} {was} removed"))
        elif was is None:
            found.append(("breaking", path, f"{bound} {now} added"))
        elif tighter(was, now):
            found.append(("breaking", path, f"{bound} tightened from {was} to {now}"))
        else:
            found.append(("compatible", path, f"{bound} loosened from {was} to {now}"))
    for constraint in _EXACT:
        was, now = old.get(constraint), new.get(constraint)
        if was == now:
            continue
        if now is None:
            found.append(("compatible", path, f"{constraint} {was!r} removed"))
        else:
            verb = "added" if was is None else f"changed from {was!r} to"
            found.append(("breaking", path, f"{constraint} {verb} {now!r}"))
    return found


def _raised(was: float, now: float) -> bool:
    return now > was


def _lowered(was: float, now: float) -> bool:
    return now < was
