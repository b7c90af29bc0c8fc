"""Contracts: the Event base, the registry, the wire codec and the JSON Schema export."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from fulfilment.contracts import OrderCancelled, OrderLine, OrderPlaced, StockRejected

from contracts import (
    DuplicateContract,
    Event,
    InvalidPayload,
    Registry,
    UnknownEventType,
    decode,
    derive_message_id,
    describe,
    encode,
    json_schema,
)


class ParcelLost(Event, frozen=True):
    """A test-only event with every class variable left at its default."""

    __routing_key__ = "parcel.lost"

    parcel_id: str


class ParcelFound(Event, frozen=True):
    """A test-only event that names itself on the wire."""

    __wire_name__ = "parcel-found"
    __version__ = 2
    __routing_key__ = "parcel.found"

    parcel_id: str
    where: str | None = None


class ParcelFoundV3(Event, frozen=True):
    """A newer version of ParcelFound, under the same wire name and routing key."""

    __wire_name__ = "parcel-found"
    __version__ = 3
    __routing_key__ = "parcel.found"

    parcel_id: str


class ParcelLostAgain(Event, frozen=True):
    """A second type that claims ParcelLost's wire name and version."""

    __wire_name__ = "ParcelLost"
    __routing_key__ = "parcel.lost"

    parcel_id: str


def placed_body(**overrides: Any) -> dict[str, Any]:
    """A valid OrderPlaced body with three lines, with some keys replaced."""
    body: dict[str, Any] = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "lines": [
            {"sku": "apple", "qty": 1, "unit_price_cents": 100},
            {"sku": "pear", "qty": 2, "unit_price_cents": 150},
            {"sku": "plum", "qty": 3, "unit_price_cents": 50},
        ],
        "total_cents": 550,
    }
    body.update(overrides)
    return body


class TestEvent:
    """The Event base: wire metadata declared as class variables."""

    def test_the_wire_name_defaults_to_the_class_name(self) -> None:
        """An event that declares no wire name travels under its class name."""
        # Given / When: ParcelLost declares only a routing key
        # Then
        assert ParcelLost.__wire_name__ == "ParcelLost"

    def test_the_version_defaults_to_one(self) -> None:
        """An event that declares no version is version 1."""
        # Given / When: ParcelLost declares no version
        # Then
        assert ParcelLost.__version__ == 1

    def test_declared_wire_name_and_version_are_kept(self) -> None:
        """An event's own wire name and version win over the defaults."""
        # Given / When: ParcelFound declares both
        # Then
        assert (ParcelFound.__wire_name__, ParcelFound.__version__) == ("parcel-found", 2)

    def test_class_variables_never_reach_the_body(self) -> None:
        """Wire name, version and routing key are metadata, not fields."""
        # Given
        event = ParcelFound(parcel_id="p-1")
        # When
        body = msgspec.json.decode(encode(event))
        # Then
        assert body == {"parcel_id": "p-1", "where": None}

    @pytest.mark.parametrize(
        "routing_key", ["Order.Placed", "orderplaced", "order..placed", "order.placed.", "1.x"]
    )
    def test_an_invalid_routing_key_is_rejected_when_the_class_is_created(
        self, routing_key: str
    ) -> None:
        """A routing key that is not dotted lower case fails at class creation, not at publish."""
        # Given / When / Then
        with pytest.raises(TypeError, match=r"must be dotted lower case like 'order\.placed'"):

            class Broken(Event, frozen=True):
                __routing_key__ = routing_key

    def test_a_missing_routing_key_is_rejected_when_the_class_is_created(self) -> None:
        """Every event must say where it is routed."""
        # Given / When / Then
        with pytest.raises(TypeError, match=r"Unrouted.__routing_key__ .* got None"):

            class Unrouted(Event, frozen=True):
                order_id: str

    def test_a_version_below_one_is_rejected(self) -> None:
        """Versions count from 1."""
        # Given / When / Then
        with pytest.raises(TypeError, match="must be a positive int"):

            class Versionless(Event, frozen=True):
                __routing_key__ = "order.placed"
                __version__ = 0

    def test_events_are_frozen(self) -> None:
        """An event is an immutable fact."""
        # Given
        event = ParcelLost(parcel_id="p-1")
        # When / Then
        with pytest.raises(AttributeError):
            event.parcel_id = "p-2"  # type: ignore[misc]

    def test_events_are_keyword_only(self) -> None:
        """An event is built from keywords only, as the Event base documents."""
        # Given / When / Then
        with pytest.raises(TypeError):
            OrderCancelled("o-1", "out of stock")  # type: ignore[misc, unused-ignore]

    def test_describe_names_a_contract_with_its_version_and_routing_key(self) -> None:
        """describe() is how the CLI and errors name a contract."""
        # Given / When / Then
        assert describe(OrderPlaced) == "OrderPlaced v2 (order.placed)"


class TestRegistry:
    """The registry: (wire name, version) → type, and routing key → type."""

    def test_a_registered_contract_is_found_by_name_and_version(self) -> None:
        """Lookup returns exactly the registered type."""
        # Given
        registry = Registry()
        registry.register(ParcelFound)
        # When
        found = registry.lookup("parcel-found", 2)
        # Then
        assert found is ParcelFound
        assert ParcelFound in registry
        assert len(registry) == 1

    def test_register_works_as_a_class_decorator(self) -> None:
        """register returns the class it was given."""
        # Given
        registry = Registry()
        # When
        returned = registry.register(ParcelLost)
        # Then
        assert returned is ParcelLost

    def test_lookup_defaults_to_version_one(self) -> None:
        """A message without a version header means version 1."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)
        # When / Then
        assert registry.lookup("ParcelLost") is ParcelLost

    def test_registering_the_same_type_twice_is_harmless(self) -> None:
        """Re-importing a contract module does not raise."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)
        # When
        registry.register(ParcelLost)
        # Then
        assert len(registry) == 1

    def test_a_second_type_under_one_name_and_version_is_a_duplicate(self) -> None:
        """Two types may not claim one wire name and version."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)
        # When / Then
        with pytest.raises(DuplicateContract) as caught:
            registry.register(ParcelLostAgain)
        assert str(caught.value) == (
            f"ParcelLost v1 is already registered by {__name__}.ParcelLost"
        )
        assert isinstance(caught.value, ValueError)

    def test_an_unknown_name_lists_the_known_names(self) -> None:
        """The error for an unknown type says what would have been accepted."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)
        registry.register(ParcelFound)
        # When
        with pytest.raises(UnknownEventType) as caught:
            registry.lookup("ParcelStolen")
        # Then
        assert str(caught.value) == (
            "unknown event type 'ParcelStolen' (known: ParcelLost, parcel-found)"
        )
        assert isinstance(caught.value, LookupError)

    def test_a_known_name_with_an_unknown_version_names_the_version(self) -> None:
        """Asking for a version that was never registered says which version."""
        # Given
        registry = Registry()
        registry.register(ParcelFound)
        # When
        with pytest.raises(UnknownEventType) as caught:
            registry.lookup("parcel-found", 1)
        # Then
        assert (
            str(caught.value) == "unknown event type 'parcel-found' version 1 (known: parcel-found)"
        )
        assert (caught.value.name, caught.value.version) == ("parcel-found", 1)

    def test_by_routing_key_prefers_the_newest_version(self) -> None:
        """A message that arrives without a type is read as the newest version of its key."""
        # Given
        registry = Registry()
        registry.register(ParcelFound)
        registry.register(ParcelFoundV3)
        # When
        found = registry.by_routing_key("parcel.found")
        # Then
        assert found is ParcelFoundV3

    def test_by_routing_key_answers_none_when_two_names_share_the_key(self) -> None:
        """An ambiguous routing key identifies no contract."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)

        class ParcelMislaid(Event, frozen=True):
            __routing_key__ = "parcel.lost"

        registry.register(ParcelMislaid)
        # When / Then
        assert registry.by_routing_key("parcel.lost") is None

    def test_by_routing_key_answers_none_for_an_unknown_key(self) -> None:
        """No contract declares the key: no answer, no error."""
        # Given
        registry = Registry()
        registry.register(ParcelLost)
        # When / Then
        assert registry.by_routing_key("parcel.stolen") is None

    def test_iteration_is_sorted_by_name_then_version(self) -> None:
        """Listing a registry is stable whatever the registration order."""
        # Given
        registry = Registry()
        registry.register(ParcelFoundV3)
        registry.register(ParcelLost)
        registry.register(ParcelFound)
        # When
        listed = list(registry)
        # Then
        assert listed == [ParcelLost, ParcelFound, ParcelFoundV3]

    def test_the_reference_contracts_are_in_the_default_registry(self) -> None:
        """Importing fulfilment.contracts registers the saga's events, each version."""
        # Given
        from fulfilment.contracts import OrderPlacedV1

        from contracts import default_registry, lookup

        # When / Then
        assert lookup("OrderPlaced", 2) is OrderPlaced
        assert lookup("OrderPlaced") is OrderPlacedV1  # version 1 unless asked for another
        assert OrderPlaced in default_registry


class TestDecode:
    """Decoding a body into exactly its contract, with errors that name the field."""

    def test_a_valid_body_decodes_into_the_exact_struct(self) -> None:
        """The decoded value is the contract type, nested Structs included."""
        # Given
        body = msgspec.json.encode(placed_body())
        # When
        event = decode(OrderPlaced, body)
        # Then
        assert type(event) is OrderPlaced
        assert type(event.lines[0]) is OrderLine
        assert event.lines[2] == OrderLine(sku="plum", qty=3, unit_price_cents=50)
        assert event.currency == "EUR"

    def test_a_str_body_decodes_too(self) -> None:
        """Text and bytes are both accepted."""
        # Given
        body = msgspec.json.encode(placed_body()).decode()
        # When / Then
        assert decode(OrderPlaced, body).order_id == "o-1"

    def test_a_mistyped_nested_field_names_its_exact_path(self) -> None:
        """The error reads like OrderPlaced.lines[2].qty: expected int, got str."""
        # Given
        body = placed_body()
        body["lines"][2]["qty"] = "3"
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, msgspec.json.encode(body))
        # Then
        assert str(caught.value) == "OrderPlaced.lines[2].qty: expected int, got str"
        assert caught.value.path == "lines[2].qty"
        assert caught.value.type_name == "OrderPlaced"
        assert isinstance(caught.value, ValueError)

    def test_a_constraint_violation_names_its_path(self) -> None:
        """Field constraints (qty >= 1) are checked on decode."""
        # Given
        body = placed_body()
        body["lines"][0]["qty"] = 0
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, msgspec.json.encode(body))
        # Then
        assert str(caught.value) == "OrderPlaced.lines[0].qty: expected int >= 1"

    def test_a_missing_field_is_named(self) -> None:
        """A body without a required field says which one."""
        # Given
        body = placed_body()
        del body["customer_id"]
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, msgspec.json.encode(body))
        # Then
        assert str(caught.value) == "OrderPlaced: object missing required field customer_id"
        assert caught.value.path == ""

    def test_a_missing_nested_field_names_the_object_that_lacks_it(self) -> None:
        """The path points at the line, the message at the field."""
        # Given
        body = placed_body()
        del body["lines"][1]["sku"]
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, msgspec.json.encode(body))
        # Then
        assert str(caught.value) == "OrderPlaced.lines[1]: object missing required field sku"

    def test_malformed_json_is_an_invalid_payload(self) -> None:
        """A body that is not JSON at all is reported as such."""
        # Given
        body = b'{"order_id": "o-1",'
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, body)
        # Then
        assert str(caught.value).startswith("OrderPlaced: malformed JSON (")
        assert caught.value.path == ""

    @pytest.mark.parametrize("nesting", ["objects", "arrays"])
    def test_json_nested_past_the_depth_limit_is_an_invalid_payload(self, nesting: str) -> None:
        """A small body nested a thousand levels deep is the payload's fault, not a crash."""
        # Given: about 6 KB, in an unknown field the decoder has to skip
        opening, closing = (b'{"a":', b"}") if nesting == "objects" else (b"[", b"]")
        body = b'{"order_id": "o-1", "extra": ' + opening * 1_000 + b"1" + closing * 1_000 + b"}"
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, body)
        # Then
        assert str(caught.value) == "OrderPlaced: JSON nested too deeply"

    def test_a_json_array_body_is_refused(self) -> None:
        """The body must be a JSON object, not an array of them."""
        # Given
        body = msgspec.json.encode([placed_body()])
        # When
        with pytest.raises(InvalidPayload) as caught:
            decode(OrderPlaced, body)
        # Then
        assert str(caught.value) == "OrderPlaced: expected object, got array"

    def test_unknown_fields_are_ignored(self) -> None:
        """A producer that adds a field does not break older consumers."""
        # Given
        body = msgspec.json.encode(placed_body(gift_wrap=True))
        # When
        event = decode(OrderPlaced, body)
        # Then
        assert event.order_id == "o-1"


class TestEncode:
    """Encoding an event to its wire body."""

    def test_encode_then_decode_gives_the_same_event(self) -> None:
        """The codec round-trips every field, nested and optional ones included."""
        # Given
        event = OrderPlaced(
            order_id="o-9",
            customer_id="c-9",
            lines=[OrderLine(sku="fig", qty=4, unit_price_cents=25)],
            total_cents=100,
            currency="SEK",
        )
        # When
        decoded = decode(OrderPlaced, encode(event))
        # Then
        assert decoded == event

    def test_the_body_is_the_fields_as_a_plain_json_object(self) -> None:
        """No envelope: any AMQP client can publish the same bytes."""
        # Given
        event = StockRejected(order_id="o-1", reason="out of stock", sku="fig")
        # When
        body = encode(event)
        # Then
        assert body == b'{"order_id":"o-1","reason":"out of stock","sku":"fig"}'


class TestDeriveMessageId:
    """The stable message id for messages published without one."""

    def test_the_same_type_and_body_give_the_same_id(self) -> None:
        """A redelivery, or a blind re-publish, dedupes like any other message."""
        # Given
        body = b'{"order_id":"o-1"}'
        # When
        first = derive_message_id("OrderPlaced", body)
        second = derive_message_id("OrderPlaced", body)
        # Then
        assert first == second
        assert first.startswith("d-")

    def test_a_different_body_gives_a_different_id(self) -> None:
        """Two facts are two messages."""
        # Given / When
        first = derive_message_id("OrderPlaced", b'{"order_id":"o-1"}')
        second = derive_message_id("OrderPlaced", b'{"order_id":"o-2"}')
        # Then
        assert first != second

    def test_a_different_type_gives_a_different_id(self) -> None:
        """The same body under two types is two messages."""
        # Given
        body = b'{"order_id":"o-1"}'
        # When
        placed = derive_message_id("OrderPlaced", body)
        cancelled = derive_message_id("OrderCancelled", body)
        # Then
        assert placed != cancelled

    def test_long_type_names_that_share_a_prefix_give_different_ids(self) -> None:
        """Type sensitivity holds for names longer than 16 bytes too."""
        # Given
        body = b'{"order_id":"o-1"}'
        # When
        scheduled = derive_message_id("ShipmentScheduled", body)
        rescheduled = derive_message_id("ShipmentScheduledLate", body)
        # Then
        assert scheduled != rescheduled


class TestJsonSchema:
    """The JSON Schema export."""

    def test_the_schema_carries_fleets_wire_metadata(self) -> None:
        """x-fleet holds the type property, version header and routing key."""
        # Given / When
        schema = json_schema(ParcelFound)
        # Then
        assert schema["x-fleet"] == {
            "type": "parcel-found",
            "version": 2,
            "routing_key": "parcel.found",
        }
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"

    def test_the_schema_lists_required_fields_and_nested_definitions(self) -> None:
        """Fields without a default are required; nested Structs are defined alongside."""
        # Given / When
        schema = json_schema(OrderPlaced)
        # Then
        assert schema["$ref"] == "#/$defs/OrderPlaced"
        placed = schema["$defs"]["OrderPlaced"]
        assert placed["required"] == ["order_id", "customer_id", "lines", "total_cents"]
        assert placed["properties"]["currency"]["default"] == "EUR"
        assert placed["properties"]["lines"]["minItems"] == 1
        assert schema["$defs"]["OrderLine"]["properties"]["qty"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 10_000,
        }

    def test_the_schema_describes_the_contract_with_its_docstring(self) -> None:
        """A schema reader sees what the event means, not only its shape."""
        # Given / When
        schema = json_schema(OrderPlaced)
        # Then
        description = schema["$defs"]["OrderPlaced"]["description"]
        assert description.split("\n\n")[0] == "A customer placed an order; the saga's first event."
        assert "Version 2: `source` says where the order came from" in description

    def test_the_schema_is_plain_json(self) -> None:
        """The export can be written to a file as it is."""
        # Given
        schema = json_schema(OrderPlaced)
        # When
        round_tripped = msgspec.json.decode(msgspec.json.encode(schema))
        # Then
        assert round_tripped == schema
