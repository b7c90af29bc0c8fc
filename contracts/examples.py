"""Example payloads: a body of each contract that the contract itself accepts.

    >>> example(OrderPlaced)
    {'order_id': 'order-1', 'customer_id': 'customer-1', 'lines': [{'sku': 'sku', ...}], ...}

Generated from the contract's types (msgspec's type information: every bound,
length and pattern), not written by hand, so an example cannot drift from its
contract: `fleet contracts docs` and `fleet asyncapi` show them. Every field is
filled in, optional ones too, so that a reader sees the whole shape; a default
that says something (``"EUR"``) is kept, an empty one (None, ``""``, ``[]``)
gives way to a sample of the field's type. The result is decoded with the
contract before it is returned: what cannot be sampled (a pattern the sampler
cannot satisfy, a custom type) raises `ExampleUnavailable` instead of
returning an example that would be refused.
"""

from __future__ import annotations

import base64
import importlib
import math
import re
from typing import Any

import msgspec
import msgspec.inspect as mi

from contracts.codec import decode
from contracts.errors import ContractError, InvalidPayload
from contracts.event import Event


class ExampleUnavailable(ContractError):
    """No example of the contract could be generated that the contract accepts."""


def example(event_type: type[Event]) -> dict[str, Any]:
    """A JSON body of `event_type` (as Python builtins) that decodes into it.

    Raises:
        ExampleUnavailable: a field's type or constraints cannot be sampled, naming
            its path (``OrderPlaced.lines[0].sku``).
    """
    name = event_type.__wire_name__
    body = _Sampler(name).value(mi.type_info(event_type), name, "")
    assert isinstance(body, dict)
    try:
        decode(event_type, msgspec.json.encode(body))
    except InvalidPayload as exc:
        raise ExampleUnavailable(f"{name}: the generated example is refused: {exc}") from None
    return body


class _Sampler:
    """Builds one value per type, depth first; `path` names the field for errors."""

    def __init__(self, contract: str):
        self._contract = contract
        self._seen: set[type] = set()

    def value(self, info: mi.Type, path: str, hint: str, index: int = 0) -> Any:
        # One method per kind of type; a recursive Struct stops at its first repetition.
        if isinstance(info, mi.Metadata):
            return self.value(info.type, path, hint, index)
        if isinstance(info, mi.StructType):
            return self._struct(info, path)
        if isinstance(info, mi.UnionType):
            return self._union(info, path, hint, index)
        if isinstance(info, mi.StrType):
            return self._string(info, path, hint, index)
        if isinstance(info, mi.BoolType):
            return True
        if isinstance(info, mi.IntType):
            return self._integer(info, path, index)
        if isinstance(info, mi.FloatType):
            return self._float(info, path, index)
        if isinstance(info, mi.NoneType):
            return None
        if isinstance(info, mi.LiteralType):
            return info.values[index % len(info.values)]
        if isinstance(info, mi.EnumType):
            members = list(info.cls)
            return members[index % len(members)].value
        if isinstance(info, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            return self._items(info, path, hint)
        if isinstance(info, mi.TupleType):
            return [self.value(t, f"{path}[{i}]", hint, i) for i, t in enumerate(info.item_types)]
        if isinstance(info, mi.DictType):
            return self._dict(info, path, hint)
        if isinstance(info, (mi.BytesType, mi.ByteArrayType, mi.MemoryViewType)):
            return self._bytes(info, path)
        if isinstance(info, mi.DateTimeType):
            return "2026-01-01T12:00:00" + ("" if info.tz is False else "Z")
        if isinstance(info, mi.DateType):
            return "2026-01-01"
        if isinstance(info, mi.TimeType):
            return "12:00:00" + ("Z" if info.tz is True else "")
        if isinstance(info, mi.TimeDeltaType):
            return "PT30S"
        if isinstance(info, mi.UUIDType):
            return f"00000000-0000-4000-8000-{index + 1:012d}"
        if isinstance(info, mi.DecimalType):
            return "1.00"
        if isinstance(info, mi.AnyType):
            return hint or "value"
        raise self._unavailable(path, f"cannot sample a value of {type(info).__name__}")

    def _struct(self, info: mi.StructType, path: str) -> dict[str, Any] | None:
        if info.cls in self._seen:
            return None  # a recursive type: the nested occurrence is left out
        self._seen.add(info.cls)
        body: dict[str, Any] = {}
        if info.tag_field is not None:
            body[info.tag_field] = info.tag
        for field in info.fields:
            where = f"{path}.{field.encode_name}"
            default = _telling_default(field)
            body[field.encode_name] = (
                default if default is not None else self.value(field.type, where, field.name)
            )
        self._seen.discard(info.cls)
        return body

    def _union(self, info: mi.UnionType, path: str, hint: str, index: int) -> Any:
        members = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if not members:
            return None
        return self.value(members[0], path, hint, index)

    def _string(self, info: mi.StrType, path: str, hint: str, index: int) -> str:
        low, high = info.min_length or 0, info.max_length
        candidates = [_fit(_word(hint, index), low, high)]
        if info.pattern is not None:
            sampled = _from_pattern(info.pattern)
            if sampled is not None:
                candidates.append(sampled)
        for text in candidates:
            long_enough = low <= len(text) and (high is None or len(text) <= high)
            if long_enough and (info.pattern is None or re.search(info.pattern, text)):
                return text
        raise self._unavailable(path, f"no sample matches the pattern {info.pattern!r}")

    def _integer(self, info: mi.IntType, path: str, index: int) -> int:
        low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
        high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else None)
        step = info.multiple_of or 1
        start = 1 + index
        if low is not None and start < low:
            start = low
        if high is not None and start > high:
            start = high
        value = math.ceil(start / step) * step
        if (low is not None and value < low) or (high is not None and value > high):
            value = math.floor(start / step) * step
        if (low is not None and value < low) or (high is not None and value > high):
            raise self._unavailable(path, "no integer meets its bounds")
        return value

    def _float(self, info: mi.FloatType, path: str, index: int) -> float:
        value = 1.5 + index
        if info.ge is not None:
            value = max(value, info.ge)
        if info.gt is not None and value <= info.gt:
            value = info.gt + 1
        if info.le is not None:
            value = min(value, info.le)
        if info.lt is not None and value >= info.lt:
            value = info.lt - (info.lt - (info.gt if info.gt is not None else info.lt - 1)) / 2
        if info.multiple_of is not None:
            value = math.ceil(value / info.multiple_of) * info.multiple_of
        return value

    def _items(self, info: Any, path: str, hint: str) -> list[Any]:
        low, high = info.min_length or 0, info.max_length
        count = max(1, low) if high is None else min(max(1, low), high)
        return [
            self.value(info.item_type, f"{path}[{i}]", _singular(hint), i) for i in range(count)
        ]

    def _dict(self, info: mi.DictType, path: str, hint: str) -> dict[Any, Any]:
        low, high = info.min_length or 0, info.max_length
        count = max(1, low) if high is None else min(max(1, low), high)
        entries: dict[Any, Any] = {}
        for i in range(count):
            key = self.value(info.key_type, f"{path}<key>", "key", i)
            entries[key] = self.value(info.value_type, f"{path}[{key!r}]", hint, i)
        return entries

    def _bytes(self, info: Any, path: str) -> str:
        low, high = info.min_length or 0, info.max_length
        raw = _fit("example", low, high).encode()
        return base64.b64encode(raw).decode()

    def _unavailable(self, path: str, why: str) -> ExampleUnavailable:
        return ExampleUnavailable(f"{path or self._contract}: {why}")


def _telling_default(field: mi.Field) -> Any:
    """The field's default as JSON builtins, when it says something (not None, "", [] or {})."""
    if field.required:
        return None
    default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    empty = isinstance(default, (str, bytes, list, dict, set, tuple)) and not default
    if default is None or empty:
        return None
    return msgspec.to_builtins(default)


def _word(hint: str, index: int) -> str:
    """``order_id`` → ``order-1``; ``reason`` → ``reason``: a sample that reads as the field."""
    if hint.endswith("_id") and len(hint) > 3:
        return f"{hint[:-3].replace('_', '-')}-{index + 1}"
    word = hint.replace("_", "-") or "text"
    return word if index == 0 else f"{word}-{index + 1}"


def _singular(hint: str) -> str:
    return hint[:-1] if hint.endswith("s") and len(hint) > 1 else hint


def _fit(text: str, low: int, high: int | None) -> str:
    """`text` padded with ``x`` to `low` characters and cut to `high`."""
    if len(text) < low:
        text += "x" * (low - len(text))
    return text if high is None else text[:high]


def _from_pattern(pattern: str) -> str | None:
    """A string that matches `pattern`, for the simple patterns contracts use (character
    classes, repeats, groups, alternatives); None when the pattern is beyond that.

    Reads the pattern with the standard library's own regex parser (``re._parser``,
    private but stable since 3.11); without it, None.
    """
    try:
        parser: Any = importlib.import_module("re._parser")
        tree = parser.parse(pattern)
    except Exception:  # no such module on this Python, or a pattern it refuses
        return None
    out: list[str] = []
    return "".join(out) if _emit(tree, out) and re.search(pattern, "".join(out)) else None


def _emit(items: Any, out: list[str]) -> bool:
    for op, argument in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(argument))
        elif name == "NOT_LITERAL":
            out.append("a" if argument != ord("a") else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            char = _member(argument)
            if char is None:
                return False
            out.append(char)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = argument
            for _ in range(low if low > 0 else min(1, high)):
                if not _emit(sub, out):
                    return False
        elif name == "SUBPATTERN":
            if not _emit(argument[-1], out):
                return False
        elif name == "ATOMIC_GROUP":
            if not _emit(argument, out):
                return False
        elif name == "BRANCH":
            if not _emit(argument[1][0], out):
                return False
        elif name != "AT":  # anchors add nothing; back references, lookarounds: give up
            return False
    return True


#: Characters tried, in order, for a character class: readable ones first.
_CANDIDATES = "aAx0-_ .:/@"
_CATEGORIES = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def _member(items: Any) -> str | None:
    """A character of a character class (``[A-Z]``, ``[^\\x00]``, ``\\d``)."""
    negated = bool(items) and str(items[0][0]) == "NEGATE"
    members = items[1:] if negated else items
    candidates = list(_CANDIDATES)
    for op, argument in members:
        if str(op) == "LITERAL":
            candidates.append(chr(argument))
        elif str(op) == "RANGE":
            candidates.append(chr(argument[0]))
    candidates += ["1", "Z", "z"]
    for char in candidates:
        if _in_class(char, members) != negated:
            return char
    return None


def _in_class(char: str, members: Any) -> bool:
    for op, argument in members:
        name = str(op)
        if name == "LITERAL" and char == chr(argument):
            return True
        if name == "RANGE" and argument[0] <= ord(char) <= argument[1]:
            return True
        if name == "CATEGORY" and re.fullmatch(_CATEGORIES.get(str(argument), "(?!)"), char):
            return True
    return False
