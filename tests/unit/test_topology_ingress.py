"""The topology file's `ingress:` section: routes, their defaults and path-precise errors."""

from __future__ import annotations

import pytest

from topology import TopologyInvalid, loads
from topology.check import SIGNATURE_TOLERANCE, check_references
from topology.model import DEFAULT_MAX_BODY
from workers.standard_webhooks import TOLERANCE_SECONDS

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
            "exchange, version, routing_key, auth, max_body, allow_ips, dedupe_window, reply, "
            "unknown_fields, accept)",
        ),
        (
            "{contract: OrderPlaced, exchange: orders, unknown_fields: allow}",
            "ingress.routes./orders.unknown_fields: invalid enum value 'allow' "
            "(valid: reject, ignore)",
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
    assert any("ingress.route: unknown field (valid: routes, limits)" in p for p in problems)


def test_routes_are_strict_by_default_and_may_ignore_unknown_fields() -> None:
    """A route refuses fields its contract lacks unless told `unknown_fields: ignore`."""
    # Given / When
    topology = loads(
        EXCHANGES
        + """
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
    /stripe: {contract: OrderPlaced, exchange: orders, unknown_fields: ignore}
"""
    )
    # Then
    routes = topology.ingress.routes
    assert (routes["/orders"].unknown_fields, routes["/stripe"].unknown_fields) == (
        "reject",
        "ignore",
    )


class TestLimits:
    """`ingress.limits`: how long each client may take, and how many are served at once."""

    def test_the_documented_defaults(self) -> None:
        """Head 10 s, idle 5 s, body 10 s plus 1 s per KiB, keep-alive 75 s, 512 connections."""
        limits = loads(EXCHANGES).ingress.limits
        assert (
            limits.head_timeout.ms,
            limits.idle_timeout.ms,
            limits.body_timeout.ms,
            limits.min_body_rate,
            limits.keepalive_timeout.ms,
            limits.max_connections,
        ) == (10_000, 5_000, 10_000, 1024, 75_000, 512)

    def test_each_limit_can_be_set(self) -> None:
        """Durations in the file's units, the rate in bytes per second."""
        limits = loads(
            EXCHANGES + "ingress:\n  limits: {head_timeout: 2s, idle_timeout: 1s, body_timeout: 3s,"
            " min_body_rate: 100, keepalive_timeout: 30s, max_connections: 64}\n"
        ).ingress.limits
        assert (limits.head_timeout.ms, limits.idle_timeout.ms, limits.body_timeout.ms) == (
            2000,
            1000,
            3000,
        )
        assert (limits.min_body_rate, limits.keepalive_timeout.ms, limits.max_connections) == (
            100,
            30_000,
            64,
        )

    @pytest.mark.parametrize(
        ("limits", "expected"),
        [
            ("{max_connections: 0}", "ingress.limits.max_connections: expected 'int' >= 1"),
            ("{head_timeout: soon}", "ingress.limits.head_timeout: invalid duration 'soon'"),
            (
                "{header_timeout: 1s}",
                "ingress.limits: object contains unknown field 'header_timeout' (valid: "
                "head_timeout, idle_timeout, body_timeout, min_body_rate, keepalive_timeout, "
                "max_connections)",
            ),
        ],
    )
    def test_a_bad_limit_is_reported_with_its_path(self, limits: str, expected: str) -> None:
        """Like every setting of the file: the path, and the valid choices."""
        problems = problems_of(EXCHANGES + f"ingress: {{limits: {limits}}}\n")
        assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("auth", "window", "warned"),
    [
        ("standard-webhooks", "5m", True),
        ("stripe", "9m", True),
        ("stripe", "10m", False),
        ("github", "1m", False),  # nothing signed to compare with: the docs say so
        ("bearer", "1m", False),
    ],
)
def test_a_signed_route_remembering_ids_shorter_than_its_signatures_live_is_warned(
    auth: str, window: str, warned: bool
) -> None:
    """A replay after the dedupe window but within the signature's tolerance would pass."""
    # Given
    text = (
        EXCHANGES + "ingress:\n  routes:\n    /hooks: {contract: OrderPlaced, exchange: orders, "
        f"dedupe_window: {window}, auth: {{type: {auth}, secrets_env: [S]}}}}\n"
    )
    # When
    problems = [str(p) for p in check_references(loads(text))]
    # Then
    assert any("ingress.routes./hooks.dedupe_window: shorter than" in p for p in problems) == warned


def test_the_warned_tolerance_matches_the_signature_checks() -> None:
    """topology cannot import workers: the constant is repeated, and checked here."""
    assert SIGNATURE_TOLERANCE.seconds == 2 * TOLERANCE_SECONDS
