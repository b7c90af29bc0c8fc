"""The topology's `outbox:` section: what it accepts, and each mistake as one line."""

from __future__ import annotations

import pytest

from contracts import Event, Registry
from topology import Duration, OutboxSpec, TopologyInvalid, check_outbox_contracts, loads

BASE = """
exchanges: {orders: {}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        loads(text)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


class TestTheOutboxSection:
    def test_it_is_optional(self) -> None:
        assert loads(BASE).outbox is None

    def test_the_defaults(self) -> None:
        outbox = loads(BASE + "outbox: {publishes: {orders: [OrderPlaced]}}").outbox
        assert outbox == OutboxSpec(publishes={"orders": ["OrderPlaced"]})
        assert (outbox.name, outbox.database_env, outbox.batch) == (
            "default",
            "FLEET_DATABASE_URL",
            500,
        )
        assert (outbox.poll, outbox.retention) == (Duration(5_000), Duration(86_400_000))

    def test_durations_are_read_as_everywhere_else(self) -> None:
        text = BASE + "outbox: {publishes: {orders: [OrderPlaced]}, poll: 250ms, retention: 2h}"
        outbox = loads(text).outbox
        assert outbox is not None
        assert (outbox.poll, outbox.retention) == (Duration(250), Duration(7_200_000))

    def test_an_unknown_exchange_is_named(self) -> None:
        assert problems(BASE + "outbox: {publishes: {shop: [OrderPlaced]}}") == [
            "outbox.publishes.shop: unknown exchange 'shop' (known: orders)"
        ]

    @pytest.mark.parametrize(
        ("setting", "where"),
        [
            ("{}", "outbox"),
            ("{publishes: {}}", "outbox.publishes"),
            ("{publishes: {orders: []}}", "outbox.publishes.orders"),
            ("{publishes: {orders: [OrderPlaced]}, batch: 0}", "outbox.batch"),
            ("{publishes: {orders: [OrderPlaced]}, name: 'a b'}", "outbox.name"),
            ("{publishes: {orders: [OrderPlaced]}, relays: 2}", "outbox"),
        ],
    )
    def test_a_wrong_setting_is_one_problem_naming_its_path(self, setting: str, where: str) -> None:
        found = problems(BASE + f"outbox: {setting}")
        assert len(found) == 1
        assert found[0].startswith(where), found


class Placed(Event, frozen=True, kw_only=True):
    __wire_name__ = "Placed"
    __routing_key__ = "order.placed"
    order_id: str


class TestTheOutboxsContracts:
    """`topology check` (with the contracts imported): each is known and reaches a queue."""

    TEXT = """
exchanges: {orders: {type: topic}}
queues:
  billing: {bind: [{exchange: orders, routing_key: "order.*"}]}
outbox: {publishes: {orders: [Placed]}}
"""

    def registry(self) -> Registry:
        registry = Registry()
        registry.register(Placed)
        return registry

    def test_a_routed_known_contract_is_fine(self) -> None:
        assert check_outbox_contracts(loads(self.TEXT), self.registry()) == []

    def test_an_unknown_contract_is_named_with_its_path(self) -> None:
        text = self.TEXT.replace("[Placed]", "[Placed, Shipped]")
        found = check_outbox_contracts(loads(text), self.registry())
        assert [p.path for p in found] == ["outbox.publishes.orders[1]"]
        assert "Shipped" in found[0].message

    def test_a_contract_nothing_is_bound_for_would_be_parked(self) -> None:
        text = self.TEXT.replace('"order.*"', "payment.#")
        found = check_outbox_contracts(loads(text), self.registry())
        assert [(p.path, p.severity) for p in found] == [("outbox.publishes.orders[0]", "error")]
        assert "reaches no queue" in found[0].message


class TestIngressAcceptingIntoTheOutbox:
    ROUTE = "ingress: {routes: {/orders: {contract: OrderPlaced, exchange: orders%s}}}\n"

    def test_confirm_is_the_default(self) -> None:
        assert loads(BASE + self.ROUTE % "").ingress.routes["/orders"].accept == "confirm"

    def test_it_needs_an_outbox_section(self) -> None:
        assert problems(BASE + self.ROUTE % ", accept: outbox") == [
            "ingress.routes./orders.accept: `accept: outbox` needs an `outbox:` section, "
            "whose relay publishes the accepted events: outbox: {publishes: {orders: "
            "[OrderPlaced]}}"
        ]

    def test_the_outbox_must_list_the_routes_contract_under_its_exchange(self) -> None:
        text = BASE + self.ROUTE % ", accept: outbox" + "outbox: {publishes: {orders: [Other]}}"
        assert problems(text) == [
            "ingress.routes./orders.accept: add OrderPlaced to outbox.publishes.orders: the "
            "relay publishes only the contracts listed there (its broker user may publish "
            "nothing else)"
        ]

    def test_a_synchronous_route_cannot_accept_into_the_outbox(self) -> None:
        reply = ", accept: outbox, reply: {events: [OrderConfirmed], exchange: orders}"
        text = BASE + self.ROUTE % reply + "outbox: {publishes: {orders: [OrderPlaced]}}"
        assert problems(text) == [
            "ingress.routes./orders.accept: a synchronous route (reply) waits on the broker "
            "for its answer: accept it with `confirm`, or drop `reply`"
        ]

    def test_a_listed_contract_is_accepted(self) -> None:
        text = (
            BASE + self.ROUTE % ", accept: outbox" + "outbox: {publishes: {orders: [OrderPlaced]}}"
        )
        assert loads(text).ingress.routes["/orders"].accept == "outbox"

    def test_an_unknown_mode_is_refused(self) -> None:
        assert problems(BASE + self.ROUTE % ", accept: later") == [
            "ingress.routes./orders.accept: invalid enum value 'later' (valid: confirm, outbox)"
        ]
