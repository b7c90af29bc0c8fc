"""What changed between two versions of a contract, field by field, for people to read.

    >>> field_changes(OrderPlacedV1, OrderPlaced)
    [FieldChange(kind='added', path='source', ...), FieldChange(kind='changed', path='lines', ...)]

Both versions are compared through their JSON Schemas (`contracts.json_schema`),
that is as they travel: a field is its wire name, a change is one of its
schema's keywords (its type, a bound, a pattern, its default) or whether it is
required. Nested Structs are compared too (``OrderLine.sku``). Descriptions and
titles are prose, not wire format, and are left out. This says *what* changed;
whether a change breaks a reader is a separate question.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from contracts.event import Event
from contracts.schema import json_schema

ChangeKind = Literal["added", "removed", "changed"]

#: Schema keywords that describe, not constrain.
_PROSE = frozenset({"title", "description", "examples"})


@dataclass(frozen=True)
class FieldChange:
    """One field added, removed or changed between two versions.

    Attributes:
        kind: added, removed or changed.
        path: the field's wire name, prefixed by its Struct's when nested (``OrderLine.sku``).
        details: what changed, one phrase each (``type: "integer" → "string"``,
            ``now optional (default "EUR")``); for an added or removed field, how it is typed.
    """

    kind: ChangeKind
    path: str
    details: tuple[str, ...]


def field_changes(old: type[Event], new: type[Event]) -> list[FieldChange]:
    """Every field added, removed or changed from `old` to `new`, the contract's own
    fields first, then those of its nested Structs (by name), each in field order."""
    old_schema, new_schema = json_schema(old), json_schema(new)
    old_root, new_root = _root(old_schema), _root(new_schema)
    old_defs, new_defs = old_schema.get("$defs", {}), new_schema.get("$defs", {})
    changes = _compare("", old_defs[old_root], new_defs[new_root])
    nested = [n for n in new_defs if n != new_root and n in old_defs and n != old_root]
    for name in nested:
        changes += _compare(f"{name}.", old_defs[name], new_defs[name])
    return changes


def _root(schema: dict[str, Any]) -> str:
    """``{"$ref": "#/$defs/OrderPlaced", ...}`` → ``OrderPlaced``."""
    ref: str = schema["$ref"]
    return ref.rsplit("/", 1)[-1]


def _compare(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    changes: list[FieldChange] = []
    for name, schema in new_fields.items():
        if name not in old_fields:
            required = "required" if name in new_required else _optional(schema)
            typed = _typed({k: v for k, v in schema.items() if k != "default"})
            changes.append(FieldChange("added", prefix + name, (required, *typed)))
    for name, schema in old_fields.items():
        if name not in new_fields:
            changes.append(FieldChange("removed", prefix + name, _typed(schema)))
    for name, schema in new_fields.items():
        if name not in old_fields:
            continue
        details: list[str] = []
        before, after = name in old_required, name in new_required
        if before and not after:
            details.append(f"now {_optional(schema)}")
        elif after and not before:
            details.append("now required")
        details += _keyword_changes(old_fields[name], schema)
        if details:
            changes.append(FieldChange("changed", prefix + name, tuple(details)))
    return changes


def _keyword_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    details = []
    for keyword in [*old, *(k for k in new if k not in old)]:
        if keyword in _PROSE or old.get(keyword) == new.get(keyword):
            continue
        if keyword not in new:
            details.append(f"{keyword} {_render(old[keyword])} dropped")
        elif keyword not in old:
            details.append(f"{keyword} {_render(new[keyword])} added")
        else:
            details.append(f"{keyword}: {_render(old[keyword])} → {_render(new[keyword])}")
    return details


def _optional(schema: dict[str, Any]) -> str:
    if "default" in schema:
        return f"optional (default {_render(schema['default'])})"
    return "optional"


def _typed(schema: dict[str, Any]) -> tuple[str, ...]:
    """How a field is typed, as ``keyword value`` phrases (its prose left out)."""
    return tuple(f"{k} {_render(v)}" for k, v in schema.items() if k not in _PROSE)


def _render(value: Any) -> str:
    """A keyword's value, briefly: JSON, with ``#/$defs/OrderLine`` as ``OrderLine``."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace('"#/$defs/', '"')
