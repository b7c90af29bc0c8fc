"""Strict decoding: a body is refused if it carries anything its contract cannot hold.

Contracts tolerate unknown fields on purpose. A worker decoding from the broker
is a tolerant reader: a producer may add a field before every consumer knows
it, and nobody's deliveries fail meanwhile. A system's front door is the other
way round: what an outside caller sends is accepted only if it can be
processed as sent, so a misspelt field (`colour` for `color`), a field the
contract no longer has, or a key given twice is the caller's error (HTTP 400)
rather than data silently dropped on the way in.

`decode_strict` decodes with `contracts.decode`, then parses the body once
more with the standard library, whose `object_pairs_hook` sees every key
(msgspec keeps the last of a repeated key without a word), and walks the
parsed JSON beside the decoded event: every key of every object must be a
field of the Struct (or dataclass) it was decoded into. Values the contract
types as `Any`, `dict` or `msgspec.Raw` are taken as they are.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any, Literal, TypeVar

import msgspec

from contracts.codec import decode
from contracts.errors import InvalidPayload
from contracts.event import Event

E = TypeVar("E", bound=Event)

#: What `decode_strict` does with a key its contract has no field for.
UnknownFields = Literal["reject", "ignore"]

#: What parsed JSON can hold keys in, at any depth.
_CONTAINERS = (dict, list)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keys longer than this are shortened in error paths (they are the caller's text).
_MAX_KEY_IN_PATH = 64


def decode_strict(
    event_type: type[E], body: bytes | str, *, unknown_fields: UnknownFields = "reject"
) -> E:
    """Decode a body into exactly `event_type`, refusing what the contract cannot hold.

    Args:
        event_type: the contract.
        body: UTF-8 JSON.
        unknown_fields: ``"reject"`` (the default) refuses a key the contract
            has no field for, at any depth; ``"ignore"`` drops it, as
            `contracts.decode` does. A repeated key is refused either way.

    Raises:
        InvalidPayload: whatever `contracts.decode` refuses, and a key given
            twice in one object (``duplicate key``) or a field the contract
            does not have (``unknown field``), with its path (``lines[0].colour``).
            JSON nested too deeply to parse is an InvalidPayload too.
    """
    name = event_type.__wire_name__
    event = decode(event_type, body)
    # id of each object that repeats a key → (the object, kept alive so that
    # its id is not reused, and the key).
    duplicates: dict[int, tuple[dict[str, Any], str]] = {}

    def remember_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            duplicates[id(obj)] = (obj, _first_repeated(pairs))
        return obj

    try:
        parsed = json.loads(body, object_pairs_hook=remember_duplicates)
    except RecursionError:
        # msgspec may skip a deep value it has no field for; the standard
        # library recurses into it, and gives up past the interpreter's limit.
        raise InvalidPayload(name, "JSON nested too deeply") from None
    except ValueError as exc:  # what msgspec accepts and the stdlib does not
        raise InvalidPayload(name, f"malformed JSON ({exc})") from None
    if duplicates:
        path, key = _find_duplicate(parsed, duplicates)
        raise InvalidPayload(name, "duplicate key", _where(path + _field(key)))
    if unknown_fields == "reject":
        _refuse_unknown_fields(name, parsed, event)
    return event


def _first_repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no key is repeated")  # pragma: no cover


def _find_duplicate(
    parsed: Any, duplicates: dict[int, tuple[dict[str, Any], str]]
) -> tuple[str, str]:
    """The path of the first object (in document order) that repeats a key, and the key."""
    stack: list[tuple[Any, str]] = [(parsed, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if id(node) in duplicates:
                return path, duplicates[id(node)][1]
            stack.extend(reversed([(v, path + _field(k)) for k, v in node.items()]))
        elif isinstance(node, list):
            stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(node)]))
    raise AssertionError("the repeated key's object is not in the document")  # pragma: no cover


def _refuse_unknown_fields(name: str, parsed: Any, event: Event) -> None:
    """Walk the parsed JSON beside the decoded value; refuse a key that no field of
    the Struct it was decoded into has: an object's own keys in order, before
    the objects inside it."""
    stack: list[tuple[Any, Any, str]] = [(parsed, event, "")]
    while stack:
        raw, value, path = stack.pop()
        stack.extend(reversed(list(_children(name, raw, value, path))))


def _children(name: str, raw: Any, value: Any, path: str) -> Iterator[tuple[Any, Any, str]]:
    """(parsed, decoded, path) of each object or array inside `raw` (a scalar has no
    keys to check); InvalidPayload for an unknown key."""
    if isinstance(value, msgspec.Struct):
        by_key, tag_field = _struct_fields(type(value))
        if isinstance(raw, list):  # array_like: fields by position
            for i, (item, field) in enumerate(zip(raw, by_key.values(), strict=False)):
                if isinstance(item, _CONTAINERS):
                    yield item, getattr(value, field), f"{path}[{i}]"
            return
        yield from _object_fields(name, raw, value, path, by_key, tag_field)
    elif isinstance(raw, dict) and dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from _object_fields(name, raw, value, path, _dataclass_fields(type(value)), None)
    elif isinstance(value, dict) and isinstance(raw, dict):
        if len(value) == len(raw):  # a mapping: keys decoded in order, maybe not as str
            for item, decoded in zip(raw.values(), value.values(), strict=True):
                if isinstance(item, _CONTAINERS):
                    yield item, decoded, f"{path}[...]"
        else:  # a TypedDict, which dropped the keys it does not know
            for key, item in raw.items():
                if key not in value:
                    raise InvalidPayload(name, "unknown field", _where(path + _field(key)))
                if isinstance(item, _CONTAINERS):
                    yield item, value[key], path + _field(key)
    elif isinstance(value, list | tuple) and isinstance(raw, list):
        for i, (item, decoded) in enumerate(zip(raw, value, strict=False)):
            if isinstance(item, _CONTAINERS):
                yield item, decoded, f"{path}[{i}]"
    elif isinstance(value, set | frozenset) and isinstance(raw, list):
        yield from _set_items(raw, value, path)


@cache
def _struct_fields(struct: type[msgspec.Struct]) -> tuple[dict[str, str], str | None]:
    """A Struct's fields (wire name → attribute, in order) and its tag field, if tagged.

    Cached: `msgspec.structs.fields` resolves type hints, which takes far longer
    than the rest of the walk.
    """
    fields = msgspec.structs.fields(struct)
    return {f.encode_name: f.name for f in fields}, struct.__struct_config__.tag_field


@cache
def _dataclass_fields(cls: type[Any]) -> dict[str, str]:
    return {field.name: field.name for field in dataclasses.fields(cls)}


def _object_fields(
    name: str,
    raw: Any,
    value: Any,
    path: str,
    by_key: dict[str, str],
    tag_field: str | None,
) -> Iterator[tuple[Any, Any, str]]:
    if not isinstance(raw, dict):
        return
    for key, item in raw.items():
        attribute = by_key.get(key)
        if attribute is not None:
            if isinstance(item, _CONTAINERS):
                yield item, getattr(value, attribute), path + _field(key)
        elif key != tag_field:
            known = ", ".join(by_key) or "none"
            raise InvalidPayload(
                name,
                f"unknown field (the fields of {type(value).__name__}: {known})",
                _where(path + _field(key)),
            )


def _set_items(
    raw: list[Any], value: set[Any] | frozenset[Any], path: str
) -> Iterator[tuple[Any, Any, str]]:
    """A set's items have no order: find the decoded item of each parsed object by
    converting it again (a set can hold only hashable, hence frozen, Structs)."""
    kinds = {type(item) for item in value if isinstance(item, msgspec.Struct)}
    for i, item in enumerate(raw):
        if not isinstance(item, _CONTAINERS):
            continue
        for kind in kinds:
            try:
                decoded = msgspec.convert(item, kind)
            except msgspec.ValidationError:
                continue
            if decoded in value:
                yield item, decoded, f"{path}[{i}]"
                break


def _field(key: str) -> str:
    """One step of a path: ``.name``, or ``["any key"]`` for one that is not a name."""
    shown = key if len(key) <= _MAX_KEY_IN_PATH else key[:_MAX_KEY_IN_PATH] + "…"
    return f".{shown}" if _NAME.match(key) else f"[{json.dumps(shown, ensure_ascii=False)}]"


def _where(path: str) -> str:
    """A path as `InvalidPayload` keeps it: msgspec's syntax without ``$.``."""
    return path.lstrip(".")
