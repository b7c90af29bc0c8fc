"""Strict decoding (`contracts.strict.decode_strict`): a body is accepted only if its
contract holds all of it; unknown fields and repeated keys are refused with their path."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, TypedDict

import msgspec
import pytest
from fulfilment.contracts import OrderPlaced

from contracts import Event, InvalidPayload, decode
from contracts.strict import decode_strict


class Tag(msgspec.Struct, frozen=True):
    """A hashable Struct, so that a set can hold it."""

    name: str


class Card(msgspec.Struct, frozen=True, tag="card"):
    last4: str


class Transfer(msgspec.Struct, frozen=True, tag="transfer"):
    iban: str


@dataclasses.dataclass(frozen=True)
class Address:
    street: str


class Contact(TypedDict):
    email: str


class Point(msgspec.Struct, frozen=True, array_like=True):
    x: int
    y: int


class Sparse(msgspec.Struct, frozen=True, omit_defaults=True):
    note: str = ""


class ParcelSent(Event, frozen=True, kw_only=True, rename="camel"):
    """A test-only contract with a field of every shape the walk must follow."""

    __routing_key__ = "parcel.sent"

    parcel_id: str
    payment: Card | Transfer | None = None
    tags: frozenset[Tag] = frozenset()
    address: Address | None = None
    contact: Contact | None = None
    route: list[Point] = []
    sparse: Sparse | None = None
    by_depot: dict[int, Tag] = {}
    extra: dict[str, Any] = {}
    anything: Any = None
    raw: msgspec.Raw = msgspec.Raw(b"null")
    kind: Literal["box", "letter"] = "box"


def order(**overrides: Any) -> dict[str, Any]:
    """A valid OrderPlaced body, with some keys replaced."""
    body: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "lines": [
            {"sku": "apple", "qty": 1, "unit_price_cents": 100},
            {"sku": "pear", "qty": 2, "unit_price_cents": 150},
        ],
        "total_cents": 400,
    }
    body.update(overrides)
    return body


def refusal(event_type: type[Event], body: bytes | str, **options: Any) -> InvalidPayload:
    """The InvalidPayload `decode_strict` raises for `body`."""
    with pytest.raises(InvalidPayload) as caught:
        decode_strict(event_type, body, **options)
    return caught.value


class TestAccepted:
    """What the contract holds in full decodes exactly as `contracts.decode` does."""

    def test_a_body_of_the_contracts_fields_decodes_like_decode(self) -> None:
        """Strictness changes nothing for a body the contract holds in full."""
        # Given
        body = json.dumps(order())
        # When
        event = decode_strict(OrderPlaced, body)
        # Then
        assert event == decode(OrderPlaced, body)

    def test_every_shape_of_field_is_followed_without_false_alarms(self) -> None:
        """Renamed fields, tags, sets, dataclasses, TypedDicts, array-like Structs,
        omitted defaults, int-keyed mappings, Any and Raw: all accepted as sent."""
        # Given
        body = {
            "parcelId": "p-1",
            "payment": {"type": "card", "last4": "4242"},
            "tags": [{"name": "fragile"}, {"name": "heavy"}],
            "address": {"street": "Main 1"},
            "contact": {"email": "a@example.com"},
            "route": [[1, 2], [3, 4]],
            "sparse": {"note": ""},  # the default, which to_builtins would omit
            "byDepot": {"7": {"name": "north"}},
            "extra": {"anything": {"goes": [1, {"here": True}]}},
            "anything": {"deep": {"keys": 1}},
            "raw": {"kept": "as is"},
            "kind": "letter",
        }
        # When
        event = decode_strict(ParcelSent, json.dumps(body))
        # Then
        assert event.payment == Card(last4="4242")
        assert event.by_depot == {7: Tag(name="north")}
        assert event.route == [Point(1, 2), Point(3, 4)]


class TestUnknownFields:
    """A key the contract has no field for is refused at any depth, with its path."""

    @pytest.mark.parametrize(
        ("body", "path"),
        [
            (order(colour="red"), "colour"),
            (
                order(lines=[{"sku": "a", "qty": 1, "unit_price_cents": 1, "colour": "red"}]),
                "lines[0].colour",
            ),
            (order(**{"x y": 1}), '["x y"]'),
        ],
    )
    def test_an_unknown_field_is_refused_with_its_path(
        self, body: dict[str, Any], path: str
    ) -> None:
        """The path names the key itself; the message lists the fields that exist."""
        # When
        refused = refusal(OrderPlaced, json.dumps(body))
        # Then
        assert refused.path == path
        assert refused.detail.startswith("unknown field")

    def test_the_message_names_the_struct_and_its_fields(self) -> None:
        """The one-line error says what would have been accepted."""
        body = order(lines=[{"sku": "a", "qty": 1, "unit_price_cents": 1, "colour": "red"}])
        refused = refusal(OrderPlaced, json.dumps(body))
        assert str(refused) == (
            "OrderPlaced.lines[0].colour: unknown field "
            "(the fields of OrderLine: sku, qty, unit_price_cents)"
        )

    @pytest.mark.parametrize(
        ("field", "value", "path"),
        [
            ("payment", {"type": "card", "last4": "1", "cvc": "1"}, "payment.cvc"),
            ("tags", [{"name": "a"}, {"name": "b", "colour": "red"}], "tags[1].colour"),
            ("address", {"street": "x", "city": "y"}, "address.city"),
            ("contact", {"email": "x", "phone": "1"}, "contact.phone"),
            ("byDepot", {"7": {"name": "n", "size": 1}}, "byDepot[...].size"),
            ("sparse", {"note": "", "more": 1}, "sparse.more"),
        ],
    )
    def test_unknown_fields_inside_every_kind_of_container_are_found(
        self, field: str, value: Any, path: str
    ) -> None:
        """Tagged unions, sets of Structs, dataclasses, TypedDicts and mappings alike."""
        # When
        refused = refusal(ParcelSent, json.dumps({"parcelId": "p", field: value}))
        # Then
        assert (refused.path, refused.detail.split(" (")[0]) == (path, "unknown field")

    def test_a_python_name_is_not_a_renamed_fields_wire_name(self) -> None:
        """The contract's wire names count: `parcel_id` is unknown when it is `parcelId`."""
        refused = refusal(ParcelSent, json.dumps({"parcelId": "p", "parcel_id": "p"}))
        assert refused.path == "parcel_id"

    def test_the_first_unknown_field_of_the_outermost_object_is_reported(self) -> None:
        """Of several unknown keys, the caller hears of the first one of the outer object."""
        body = order(zeta=1, lines=[{"sku": "a", "qty": 1, "unit_price_cents": 1, "alpha": 1}])
        body = {"first": 1, **body}
        assert refusal(OrderPlaced, json.dumps(body)).path == "first"

    def test_a_long_unknown_key_is_shortened_in_the_path(self) -> None:
        """The path echoes the caller's key, but not a megabyte of it."""
        refused = refusal(OrderPlaced, json.dumps(order(**{"k" * 1000: 1})))
        assert refused.path == "k" * 64 + "…"

    def test_ignore_accepts_unknown_fields_and_drops_them(self) -> None:
        """A third party's webhook carries more than the contract: `ignore` lets it in."""
        # Given
        body = json.dumps(order(livemode=False, object="event"))
        # When
        event = decode_strict(OrderPlaced, body, unknown_fields="ignore")
        # Then
        assert event == decode(OrderPlaced, json.dumps(order()))


class TestDuplicateKeys:
    """A key given twice in one object is refused, wherever it is, whatever the setting."""

    @pytest.mark.parametrize("unknown_fields", ["reject", "ignore"])
    @pytest.mark.parametrize(
        ("body", "path"),
        [
            (b'{"order_id": "o-1", "order_id": "o-2"}', "order_id"),
            (
                b'{"order_id": "o", "customer_id": "c", "total_cents": 1, "lines": '
                b'[{"sku": "a", "qty": 1, "qty": 9, "unit_price_cents": 1}]}',
                "lines[0].qty",
            ),
            (
                b'{"order_id": "o", "customer_id": "c", "total_cents": 1, "x": {"y": [{"z": 1, '
                b'"z": 2}]}, "lines": [{"sku": "a", "qty": 1, "unit_price_cents": 1}]}',
                "x.y[0].z",
            ),
        ],
    )
    def test_a_repeated_key_is_refused_with_its_path(
        self, body: bytes, path: str, unknown_fields: Literal["reject", "ignore"]
    ) -> None:
        """msgspec alone would keep the last value; the caller hears of the repeat."""
        # Given: the body is otherwise acceptable (except the first, which lacks fields)
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode_strict(OrderPlaced, body, unknown_fields=unknown_fields)
        # Then
        refused = caught.value
        if path == "order_id":  # msgspec's own check (missing fields) comes first
            assert "missing required field" in refused.detail
            return
        assert (refused.path, refused.detail) == (path, "duplicate key")

    def test_a_repeated_key_at_the_top_is_refused(self) -> None:
        """A complete body whose `total_cents` appears twice: the first one is not lost."""
        body = json.dumps(order())[:-1] + ', "total_cents": 1}'
        refused = refusal(OrderPlaced, body)
        assert (refused.path, refused.detail) == ("total_cents", "duplicate key")


class TestHostileShapes:
    """Whatever the body, the answer is an event or an InvalidPayload."""

    def test_deep_nesting_is_an_invalid_payload_never_a_recursion_error(self) -> None:
        """Every depth around both parsers' limits, in a known and an unknown field."""
        # Given
        prefix = json.dumps(order())[:-1]
        depths = range(900, 1_100)
        outcomes: list[str] = []
        # When
        for depth in depths:
            for field in ("anything", "unknown"):
                body = f'{prefix}, "{field}": {"[" * depth}{"]" * depth}}}'
                try:
                    decode_strict(OrderPlaced, body, unknown_fields="ignore")
                    outcomes.append("decoded")
                except InvalidPayload as exc:
                    outcomes.append(exc.detail)
        # Then
        assert set(outcomes) == {"decoded", "JSON nested too deeply"}

    def test_a_six_kilobyte_body_of_nested_objects_is_refused(self) -> None:
        """1,500 nested objects in about 6 KB: refused, not a crash."""
        body = '{"a":' * 1_500 + "1" + "}" * 1_500
        assert len(body) < 10_000
        assert refusal(OrderPlaced, body).detail == "JSON nested too deeply"

    def test_a_type_error_is_reported_as_decode_reports_it(self) -> None:
        """Strictness adds checks; the contract's own come first and read the same."""
        body = json.dumps(order(lines=[{"sku": "a", "qty": "2", "unit_price_cents": 1}]))
        refused = refusal(OrderPlaced, body)
        assert (refused.path, refused.detail) == ("lines[0].qty", "expected int, got str")

    def test_an_integer_too_long_for_the_standard_library_is_malformed(self) -> None:
        """msgspec skips a 5,000-digit number it has no field for; the stdlib will not parse it."""
        body = json.dumps(order())[:-1] + ', "n": ' + "9" * 5_000 + "}"
        refused = refusal(OrderPlaced, body, unknown_fields="ignore")
        assert refused.detail.startswith("malformed JSON")
