"""Example payloads generated from a contract's types (`contracts.examples`)."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
import pytest
from fulfilment import contracts as reference

from contracts import Event, Fault, Identifier, NonNegativeInt64, Text, decode
from contracts.examples import ExampleUnavailable, example
from workers.project import exposed_contracts


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(msgspec.Struct, frozen=True, tag=True):
    x: int
    y: int


class Everything(Event, frozen=True, kw_only=True):
    __routing_key__ = "test.everything"

    order_id: Identifier
    code: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}-\d{3}$")]
    short: Annotated[str, msgspec.Meta(min_length=5, max_length=5)]
    amount: Annotated[int, msgspec.Meta(ge=100, le=200, multiple_of=7)]
    ratio: Annotated[float, msgspec.Meta(gt=0, lt=1)]
    kind: Literal["a", "b"]
    colour: Colour
    at: datetime
    day: date
    key: uuid.UUID
    tags: Annotated[list[str], msgspec.Meta(min_length=2)]
    pair: tuple[str, int]
    counts: dict[str, NonNegativeInt64]
    point: Point
    blob: bytes
    maybe: int | None = None
    currency: str = "EUR"
    note: Text = ""


def encoded(body: object) -> bytes:
    return msgspec.json.encode(body)


class TestExample:
    @pytest.mark.parametrize(
        "contract",
        exposed_contracts(vars(reference).values()),
        ids=lambda t: t.__wire_name__,
    )
    def test_every_reference_contracts_example_decodes_into_it(self, contract: type[Event]) -> None:
        """Each contract of the reference fleet gets an example that it accepts."""
        assert isinstance(decode(contract, encoded(example(contract))), contract)

    def test_a_fault_example_carries_the_parked_message(self) -> None:
        """Fault[OrderPlaced]'s example holds an OrderPlaced, not null."""
        body = example(Fault.of(reference.OrderPlaced))
        decode(Fault.of(reference.OrderPlaced), encoded(body))
        assert body["message"]["order_id"] == "order-1"

    def test_every_kind_of_field_gets_a_value_its_constraints_accept(self) -> None:
        """Patterns, lengths, bounds, multiples, literals, enums, dates, collections and
        tagged Structs are all sampled within their constraints."""
        # Given a contract with every kind of field
        # When its example is made
        body = example(Everything)
        # Then it decodes, and each constrained value is within its bounds
        decoded = decode(Everything, encoded(body))
        assert re.fullmatch(r"[A-Z]{2}-\d{3}", decoded.code)
        assert len(decoded.short) == 5
        assert 100 <= decoded.amount <= 200
        assert decoded.amount % 7 == 0
        assert 0 < decoded.ratio < 1
        assert len(decoded.tags) == 2
        assert decoded.tags[0] != decoded.tags[1]
        assert body["point"]["type"] == "Point"

    def test_ids_read_as_the_field_they_fill(self) -> None:
        """``order_id`` is sampled as ``order-1``."""
        assert example(Everything)["order_id"] == "order-1"

    def test_a_default_that_says_something_is_kept_and_an_empty_one_is_filled_in(self) -> None:
        """``currency = "EUR"`` stays; ``note = ""`` and ``maybe = None`` get a sample."""
        body = example(Everything)
        assert body["currency"] == "EUR"
        assert body["note"] == "note"
        assert body["maybe"] == 1

    def test_a_pattern_beyond_the_sampler_is_unavailable_naming_the_field(self) -> None:
        """A look-ahead cannot be sampled: ExampleUnavailable names the field's path."""

        class Odd(Event, frozen=True, kw_only=True):
            __routing_key__ = "test.odd"

            token: Annotated[str, msgspec.Meta(pattern=r"^(?=\d)(?!0)\w+$")]

        with pytest.raises(ExampleUnavailable, match=r"Odd\.token: no sample matches"):
            example(Odd)
