"""What changed between two versions of a contract (`contracts.changes`)."""

from __future__ import annotations

import types
from typing import Annotated

import msgspec

from contracts import Event
from contracts.changes import FieldChange, field_changes


class Line(msgspec.Struct, frozen=True, kw_only=True):
    sku: Annotated[str, msgspec.Meta(max_length=32)]
    qty: int


class PlacedV1(Event, frozen=True, kw_only=True):
    """Version one."""

    __wire_name__ = "Placed"
    __routing_key__ = "order.placed"

    order_id: str
    total: int
    coupon: str
    lines: list[Line]
    currency: str = "EUR"


#: The next version of Line: a class of the same name, with a longer sku.
LineNext = types.new_class(
    "Line",
    (msgspec.Struct,),
    {"frozen": True, "kw_only": True},
    lambda ns: ns.update(
        {"__annotations__": {"sku": Annotated[str, msgspec.Meta(max_length=64)], "qty": int}}
    ),
)


class PlacedLongerSku(Event, frozen=True, kw_only=True):
    __wire_name__ = "Placed"
    __version__ = 2
    __routing_key__ = "order.placed"

    order_id: str
    total: int
    coupon: str
    lines: list[LineNext]  # type: ignore[valid-type]
    currency: str = "EUR"


class PlacedV2(Event, frozen=True, kw_only=True):
    """Version two: prose differs too, which is no change on the wire."""

    __wire_name__ = "Placed"
    __version__ = 2
    __routing_key__ = "order.placed"

    order_id: str
    total: str
    lines: list[Line]
    currency: str
    source: str = "web"
    channel: str


class TestFieldChanges:
    def test_added_removed_and_changed_fields_are_each_named(self) -> None:
        """From v1 to v2: source and channel added, coupon removed, total retyped,
        currency now required."""
        changes = field_changes(PlacedV1, PlacedV2)
        assert changes == [
            FieldChange("added", "source", ('optional (default "web")', 'type "string"')),
            FieldChange("added", "channel", ("required", 'type "string"')),
            FieldChange("removed", "coupon", ('type "string"',)),
            FieldChange("changed", "total", ('type: "integer" → "string"',)),
            FieldChange("changed", "currency", ("now required", 'default "EUR" dropped')),
        ]

    def test_a_field_of_a_nested_struct_is_named_with_its_struct(self) -> None:
        """A bound that changed inside a nested Struct reads ``Line.sku``."""
        changes = field_changes(PlacedV1, PlacedLongerSku)
        assert changes == [FieldChange("changed", "Line.sku", ("maxLength: 32 → 64",))]

    def test_two_versions_that_differ_only_in_prose_have_no_changes(self) -> None:
        """Docstrings are not wire format: the same fields mean no change."""

        class Again(Event, frozen=True, kw_only=True):
            """Said differently."""

            __wire_name__ = "Placed"
            __version__ = 2
            __routing_key__ = "order.placed"

            order_id: str
            total: int
            coupon: str
            lines: list[Line]
            currency: str = "EUR"

        assert field_changes(PlacedV1, Again) == []
