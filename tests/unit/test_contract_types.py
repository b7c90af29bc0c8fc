"""Bounded field types refuse at decode what the systems behind a contract cannot
store: integers past int64, text with NUL, ids that are empty or too long."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from fulfilment.contracts import OrderPlaced

from contracts import (
    INT64_MAX,
    INT64_MIN,
    NO_NUL,
    Event,
    Identifier,
    Int32,
    Int64,
    InvalidPayload,
    NonNegativeInt64,
    Text,
    decode,
    json_schema,
)


class Bounded(Event, frozen=True, kw_only=True):
    """One field of each bounded type."""

    __routing_key__ = "test.bounded"

    small: Int32 = 0
    big: Int64 = 0
    cents: NonNegativeInt64 = 0
    note: Text = ""
    name: Identifier = "x"
    code: Annotated[str, NO_NUL, msgspec.Meta(max_length=3)] = ""


def body(**fields: Any) -> bytes:
    return msgspec.json.encode(fields)


class TestIntegers:
    @pytest.mark.parametrize("value", [INT64_MIN, -1, 0, INT64_MAX])
    def test_every_int64_is_accepted(self, value: int) -> None:
        assert decode(Bounded, body(big=value)).big == value

    @pytest.mark.parametrize("value", [INT64_MAX + 1, INT64_MIN - 1, 10**30])
    def test_integers_past_int64_are_refused_with_the_field(self, value: int) -> None:
        with pytest.raises(InvalidPayload) as caught:
            decode(Bounded, body(big=value))
        assert caught.value.path == "big"

    def test_negative_amounts_are_refused(self) -> None:
        with pytest.raises(InvalidPayload, match=r"Bounded.cents: expected int >= 0"):
            decode(Bounded, body(cents=-1))

    def test_int32_stops_at_postgresqls_integer(self) -> None:
        with pytest.raises(InvalidPayload, match="small"):
            decode(Bounded, body(small=2**31))


class TestText:
    def test_text_with_nul_is_refused(self) -> None:
        with pytest.raises(InvalidPayload) as caught:
            decode(Bounded, body(note="a\x00b"))
        assert caught.value.path == "note"

    def test_text_with_newlines_and_any_other_character_is_accepted(self) -> None:
        assert decode(Bounded, body(note="line\nnext ✓ \x01")).note == "line\nnext ✓ \x01"

    def test_text_past_ten_thousand_characters_is_refused(self) -> None:
        with pytest.raises(InvalidPayload, match="length <= 10000"):
            decode(Bounded, body(note="a" * 10_001))

    @pytest.mark.parametrize("value", ["", "x" * 256])
    def test_an_identifier_is_one_to_255_characters(self, value: str) -> None:
        with pytest.raises(InvalidPayload, match=r"Bounded\.name"):
            decode(Bounded, body(name=value))

    def test_constraints_combine_with_no_nul(self) -> None:
        with pytest.raises(InvalidPayload, match="length <= 3"):
            decode(Bounded, body(code="abcd"))
        with pytest.raises(InvalidPayload, match="regex"):
            decode(Bounded, body(code="a\x00"))


class TestTheReferenceContractsAreBounded:
    ORDER: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "total_cents": 600,
        "lines": [{"sku": "apple", "qty": 1, "unit_price_cents": 600}],
    }

    @pytest.mark.parametrize(
        ("change", "path"),
        [
            ({"total_cents": 10**30}, "total_cents"),
            ({"customer_id": "c\x00-1"}, "customer_id"),
            ({"order_id": ""}, "order_id"),
            ({"lines": [{"sku": "apple", "qty": 1, "unit_price_cents": 1}] * 101}, "lines"),
        ],
        ids=["total-past-int64", "nul-in-customer", "empty-order-id", "too-many-lines"],
    )
    def test_an_order_that_cannot_be_stored_is_refused_at_decode(
        self, change: dict[str, Any], path: str
    ) -> None:
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, msgspec.json.encode({**self.ORDER, **change}))
        assert caught.value.path == path

    def test_the_bounds_are_in_the_exported_schema(self) -> None:
        schema = json_schema(OrderPlaced)
        fields = schema["$defs"]["OrderPlaced"]["properties"]
        assert fields["total_cents"]["maximum"] == INT64_MAX
        assert fields["customer_id"]["maxLength"] == 255
        assert fields["lines"]["maxItems"] == 100
