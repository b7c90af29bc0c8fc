"""The compatibility gate's rules, each on both sides: what breaks a locked contract
version, and the same kind of change that does not."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import msgspec
import pytest

from contracts import Event, Evolution
from contracts.compat import Change, diff, dumps, lock


def contract(version: int = 1, routing_key: str = "thing.made", **fields: Any) -> type[Event]:
    """A contract `Thing` of this version with these fields (name → type or (type, default))."""
    spec = [
        (name, *value) if isinstance(value, tuple) else (name, value)
        for name, value in fields.items()
    ]
    return msgspec.defstruct(  # type: ignore[no-any-return]
        f"ThingV{version}",
        spec,
        bases=(Event,),
        frozen=True,
        kw_only=True,
        namespace={
            "__wire_name__": "Thing",
            "__version__": version,
            "__routing_key__": routing_key,
        },
    )


def changes(before: type[Event], after: type[Event]) -> list[tuple[str, str, str]]:
    return [(c.kind, c.path, c.what) for c in diff(lock([before]), lock([after]))]


class Colour(Enum):
    RED = "red"
    GREEN = "green"


class Hue(Enum):
    RED = "red"


class TestFields:
    def test_a_removed_field_breaks(self) -> None:
        assert changes(contract(a=int, b=int), contract(a=int)) == [
            ("breaking", "$.b", "the field was removed")
        ]

    def test_a_field_added_without_a_default_breaks_and_with_one_does_not(self) -> None:
        assert changes(contract(a=int), contract(a=int, b=int)) == [
            ("breaking", "$.b", "a field added without a default")
        ]
        assert changes(contract(a=int), contract(a=int, b=(int, 0))) == [
            ("compatible", "$.b", "a field added with a default")
        ]

    def test_a_field_made_required_breaks_and_made_optional_does_not(self) -> None:
        assert changes(contract(a=(int, 0)), contract(a=int)) == [
            ("breaking", "$.a", "the field became required (its default removed)")
        ]
        assert changes(contract(a=int), contract(a=(int, 0))) == [
            ("compatible", "$.a", "the field became optional")
        ]


class TestTypes:
    def test_a_narrowed_type_breaks_and_a_widened_one_does_not(self) -> None:
        assert changes(contract(a=int | str), contract(a=int)) == [
            ("breaking", "$.a", "the type was narrowed: string no longer accepted")
        ]
        assert changes(contract(a=int), contract(a=int | str)) == [
            ("compatible", "$.a", "the type was widened: string accepted")
        ]

    def test_number_to_integer_breaks_and_integer_to_number_does_not(self) -> None:
        assert changes(contract(a=float), contract(a=int))[0][0] == "breaking"
        assert changes(contract(a=int), contract(a=float))[0][0] == "compatible"

    def test_refusing_null_breaks_and_accepting_it_does_not(self) -> None:
        assert changes(contract(a=int | None), contract(a=int)) == [
            ("breaking", "$.a", "the type was narrowed: null no longer accepted")
        ]
        assert changes(contract(a=int), contract(a=int | None)) == [
            ("compatible", "$.a", "the type was widened: null accepted")
        ]

    def test_a_change_deep_inside_a_list_names_its_path(self) -> None:
        Small = Annotated[int, msgspec.Meta(le=5)]
        Big = Annotated[int, msgspec.Meta(le=10)]
        assert changes(contract(a=list[Big]), contract(a=list[Small])) == [
            ("breaking", "$.a[]", "maximum tightened from 10 to 5")
        ]


class TestEnums:
    def test_a_removed_enum_value_breaks_and_an_added_one_does_not(self) -> None:
        assert changes(contract(a=Colour), contract(a=Hue)) == [
            ("breaking", "$.a", "enum value(s) removed: 'green'")
        ]
        assert changes(contract(a=Hue), contract(a=Colour)) == [
            ("compatible", "$.a", "enum value(s) added: 'green'")
        ]


class TestConstraints:
    @pytest.mark.parametrize(
        ("tight", "loose", "what"),
        [
            (msgspec.Meta(max_length=5), msgspec.Meta(max_length=10), "maxLength"),
            (msgspec.Meta(min_length=3), msgspec.Meta(min_length=1), "minLength"),
        ],
        ids=["max-length", "min-length"],
    )
    def test_a_tightened_bound_breaks_and_a_loosened_one_does_not(
        self, tight: msgspec.Meta, loose: msgspec.Meta, what: str
    ) -> None:
        tightened = changes(contract(a=Annotated[str, loose]), contract(a=Annotated[str, tight]))
        loosened = changes(contract(a=Annotated[str, tight]), contract(a=Annotated[str, loose]))
        assert [(k, w.split()[0]) for k, _, w in tightened] == [("breaking", what)]
        assert [(k, w.split()[0]) for k, _, w in loosened] == [("compatible", what)]

    def test_a_bound_added_breaks_and_one_removed_does_not(self) -> None:
        bounded = Annotated[int, msgspec.Meta(ge=0)]
        assert changes(contract(a=int), contract(a=bounded)) == [
            ("breaking", "$.a", "minimum 0 added")
        ]
        assert changes(contract(a=bounded), contract(a=int)) == [
            ("compatible", "$.a", "minimum 0 removed")
        ]

    def test_a_pattern_added_or_changed_breaks_and_one_removed_does_not(self) -> None:
        one = Annotated[str, msgspec.Meta(pattern="^a")]
        other = Annotated[str, msgspec.Meta(pattern="^b")]
        assert changes(contract(a=str), contract(a=one))[0][0] == "breaking"
        assert changes(contract(a=one), contract(a=other))[0][0] == "breaking"
        assert changes(contract(a=one), contract(a=str)) == [
            ("compatible", "$.a", "pattern '^a' removed")
        ]


class TestVersions:
    def test_a_changed_routing_key_breaks(self) -> None:
        assert changes(contract(a=int), contract(routing_key="thing.done", a=int)) == [
            ("breaking", "", "routing key changed from 'thing.made' to 'thing.done'")
        ]

    def test_a_removed_version_breaks(self) -> None:
        v1, v2 = contract(a=int), contract(2, a=int)
        found = diff(lock([v1, v2]), lock([v2]))
        assert found == [Change("breaking", "Thing", 1, "", "the version was removed")]

    def test_a_new_version_breaks_without_an_upcaster_and_passes_with_one(self) -> None:
        """The breaking change (a field added without a default) as v2 with an upcaster."""
        v1 = contract(a=int)
        v2 = contract(2, a=int, b=int)
        without = diff(lock([v1]), lock([v1, v2], Evolution()))
        evolution = Evolution()

        def to_v2(old: Any) -> Any:
            return v2(a=old.a, b=0)

        to_v2.__annotations__ = {"old": v1, "return": v2}  # the classes are made at run time
        evolution.upcaster(to_v2)
        with_upcaster = diff(lock([v1]), lock([v1, v2], evolution))
        assert [(c.kind, c.version) for c in without] == [("breaking", 2)]
        assert "no upcaster from v1" in without[0].what
        assert with_upcaster == [
            Change("compatible", "Thing", 2, "", "a new version, upcast from v1")
        ]

    def test_a_new_contract_is_compatible_and_nothing_changed_is_no_change(self) -> None:
        assert diff(lock([]), lock([contract(a=int)])) == [
            Change("compatible", "Thing", 1, "", "a new contract")
        ]
        assert diff(lock([contract(a=int)]), lock([contract(a=int)])) == []

    def test_the_lock_text_is_deterministic(self) -> None:
        assert dumps(lock([contract(a=int, b=str)])) == dumps(lock([contract(a=int, b=str)]))
