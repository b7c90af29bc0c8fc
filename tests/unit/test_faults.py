"""Fault contracts: one per contract, named and routed after it, carrying it."""

from __future__ import annotations

from fulfilment.contracts import OrderPlaced

from contracts import Event, Fault, decode, encode, json_schema
from contracts.faults import is_fault


class Renamed(Event, frozen=True, kw_only=True):
    """A version 2 contract with a wire name of its own."""

    __wire_name__ = "renamed.thing"
    __version__ = 2
    __routing_key__ = "thing.renamed"

    thing_id: str


def fault(event: Event | None = None) -> Fault[OrderPlaced]:
    return Fault.of(OrderPlaced)(
        message_type="OrderPlaced",
        message_version=1,
        message_id="m-1",
        correlation_id="c-1",
        reason="permanent",
        error_type="CheckViolationError",
        error="new row violates check constraint",
        worker="inventory",
        queue="inventory",
        message=event,  # type: ignore[arg-type]
    )


class TestFaultOf:
    def test_each_contract_has_one_fault_contract(self) -> None:
        assert Fault.of(OrderPlaced) is Fault.of(OrderPlaced)
        assert Fault.of(OrderPlaced) is not Fault.of(Renamed)

    def test_it_is_named_versioned_and_routed_after_the_original(self) -> None:
        contract = Fault.of(Renamed)
        assert contract.__wire_name__ == "Fault[renamed.thing]"
        assert contract.__version__ == 2
        assert contract.__routing_key__ == "fault.thing.renamed"
        assert contract.original is Renamed
        assert is_fault(contract)
        assert not is_fault(Renamed)

    def test_it_carries_the_original_message_through_the_wire(self) -> None:
        order = decode(
            OrderPlaced,
            b'{"order_id": "o-1", "customer_id": "c-1", "total_cents": 1,'
            b' "lines": [{"sku": "apple", "qty": 1, "unit_price_cents": 1}]}',
        )
        assert decode(Fault.of(OrderPlaced), encode(fault(order))).message == order

    def test_a_fault_without_the_message_decodes_as_none(self) -> None:
        assert decode(Fault.of(OrderPlaced), encode(fault())).message is None

    def test_its_schema_embeds_the_originals(self) -> None:
        schema = json_schema(Fault.of(OrderPlaced))
        assert schema["x-fleet"]["type"] == "Fault[OrderPlaced]"
        assert "OrderPlaced" in schema["$defs"]
