"""The topology file's `ingress:` section: routes, their defaults and path-precise errors."""

from __future__ import annotations

import pytest

from topology import TopologyInvalid, loads
from topology.model import DEFAULT_MAX_BODY

EXCHANGES = "exchanges: {orders: {}}\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        loads(text, source="broken.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_route_loads_with_its_defaults() -> None:
    """A route needs only contract and exchange; the rest has defaults."""
    # Given / When
    topology = loads(
        EXCHANGES
        + """
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
    /hooks/orders:
      contract: OrderPlaced
      exchange: orders
      routing_key: order.placed.web
      auth: {type: standard-webhooks, secrets_env: [HOOK_SECRET, HOOK_SECRET_OLD]}
      max_body: 2048
"""
    )
    # Then
    plain = topology.ingress.routes["/orders"]
    assert (plain.version, plain.routing_key, plain.auth, plain.max_body) == (
        1,
        None,
        None,
        DEFAULT_MAX_BODY,
    )
    hooked = topology.ingress.routes["/hooks/orders"]
    assert hooked.auth is not None
    assert hooked.auth.type == "standard-webhooks"
    assert hooked.auth.secrets_env == ["HOOK_SECRET", "HOOK_SECRET_OLD"]
    assert (hooked.routing_key, hooked.max_body) == ("order.placed.web", 2048)


def test_a_synchronous_route_with_an_allow_list_loads() -> None:
    topology = loads(
        EXCHANGES
        + """
ingress:
  routes:
    /quotes:
      contract: OrderPlaced
      exchange: orders
      allow_ips: [10.0.0.0/8, 127.0.0.1]
      dedupe_window: 1h
      reply: {events: [OrderConfirmed, OrderCancelled], exchange: orders, timeout: 3s}
"""
    )
    route = topology.ingress.routes["/quotes"]
    assert route.allow_ips == ["10.0.0.0/8", "127.0.0.1"]
    assert route.dedupe_window.ms == 3_600_000
    assert route.reply is not None
    assert (route.reply.events, route.reply.timeout.ms) == (
        ["OrderConfirmed", "OrderCancelled"],
        3000,
    )
    default = loads(EXCHANGES + "ingress: {routes: {/o: {contract: A, exchange: orders}}}\n")
    assert default.ingress.routes["/o"].reply is None
    assert default.ingress.routes["/o"].dedupe_window.ms == 86_400_000


def test_a_file_without_ingress_has_no_routes() -> None:
    assert loads(EXCHANGES).ingress.routes == {}


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "{contract: OrderPlaced, exchange: order}",
            "ingress.routes./orders.exchange: unknown exchange 'order' (known: orders)",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, max_body: 0}",
            "ingress.routes./orders.max_body: expected 'int' >= 1",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, auth: {type: basic, secrets_env: [A]}}",
            "ingress.routes./orders.auth.type: invalid enum value 'basic' "
            "(valid: bearer, standard-webhooks, github, stripe)",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, auth: {type: bearer, secrets_env: []}}",
            "ingress.routes./orders.auth.secrets_env: expected 'array' of length >= 1",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, mandatory: true}",
            "ingress.routes./orders: object contains unknown field 'mandatory' (valid: contract, "
            "exchange, version, routing_key, auth, max_body, allow_ips, dedupe_window, reply)",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, allow_ips: [10.0.0.0/8, office]}",
            "ingress.routes./orders.allow_ips[1]: 'office' is not an IP address or CIDR block",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, reply: {events: [], exchange: orders}}",
            "ingress.routes./orders.reply.events: expected 'array' of length >= 1",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, reply: {events: [A], exchange: out}}",
            "ingress.routes./orders.reply.exchange: unknown exchange 'out' (known: orders)",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, dedupe_window: forever}",
            "ingress.routes./orders.dedupe_window: invalid duration 'forever'",
        ),
    ],
)
def test_a_bad_route_is_reported_with_its_path(route: str, expected: str) -> None:
    # Given
    text = EXCHANGES + f"ingress:\n  routes:\n    /orders: {route}\n"
    # When / Then
    assert any(expected in p for p in problems_of(text)), problems_of(text)


def test_paths_must_be_absolute_and_not_reserved() -> None:
    # Given
    text = (
        EXCHANGES
        + """
ingress:
  routes:
    orders: {contract: OrderPlaced, exchange: orders}
    /healthz: {contract: OrderPlaced, exchange: orders}
"""
    )
    # When
    problems = problems_of(text)
    # Then
    assert any("ingress.routes.orders: a route's path starts with '/'" in p for p in problems)
    assert any("ingress.routes./healthz: /healthz is served by the ingress" in p for p in problems)


def test_unknown_keys_under_ingress_are_errors() -> None:
    problems = problems_of(EXCHANGES + "ingress: {route: {}}\n")
    assert any("ingress.route: unknown field (valid: routes)" in p for p in problems)
