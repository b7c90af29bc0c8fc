"""The topology file's `webhooks:` section: loading, path-precise errors, checks and
the queues it expands to."""

from __future__ import annotations

import fulfilment.contracts  # noqa: F401  (registers the contracts subscriptions name)
import pytest

from contracts import default_registry
from topology import (
    BindingDecl,
    Duration,
    ExchangeDecl,
    TopologyInvalid,
    check_references,
    check_webhook_contracts,
    expand,
    loads,
    mermaid,
)
from topology.destinations import internal_range, literal_internal
from topology.model import DEFAULT_WEBHOOK_DELAYS, WebhookEvent

EXCHANGES = "exchanges: {orders: {}, payments: {}}\n"

SUBSCRIPTION = """
webhooks:
  crm:
    url: https://crm.example.com/hooks
    exchange: orders
    events: [OrderConfirmed, {contract: PaymentRefunded, exchange: payments}]
    secrets_env: [CRM_SECRET, CRM_SECRET_OLD]
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as caught:
        loads(text, source="broken.yaml")
    return [str(p) for p in caught.value.problems]


def warnings_of(text: str) -> list[str]:
    return [str(p) for p in check_references(loads(text)) if p.severity == "warning"]


class TestLoading:
    """A subscription needs url, exchange, events and secrets_env; the rest has defaults."""

    def test_a_subscription_loads_with_its_defaults(self) -> None:
        """Plain names are version 1; retries default to five broker tiers."""
        # Given / When
        topology = loads(EXCHANGES + SUBSCRIPTION)
        # Then
        crm = topology.webhooks["crm"]
        assert crm.subscribed() == [
            WebhookEvent(contract="OrderConfirmed"),
            WebhookEvent(contract="PaymentRefunded", exchange="payments"),
        ]
        assert crm.secrets_env == ["CRM_SECRET", "CRM_SECRET_OLD"]
        assert crm.retry.delays == [Duration(ms) for ms in DEFAULT_WEBHOOK_DELAYS]
        assert (crm.timeout, crm.allow_private, crm.allow_hosts) == (Duration(10_000), False, [])

    def test_a_file_without_webhooks_has_no_subscriptions(self) -> None:
        assert loads(EXCHANGES).webhooks == {}

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (
                "{url: 'https://x.example', exchange: order, events: [OrderConfirmed], "
                "secrets_env: [S]}",
                "webhooks.crm.exchange: unknown exchange 'order' (known: orders, payments)",
            ),
            (
                "{url: 'https://x.example', exchange: orders, events: [], secrets_env: [S]}",
                "webhooks.crm.events: expected 'array' of length >= 1",
            ),
            (
                "{url: 'https://x.example', exchange: orders, events: [OrderConfirmed]}",
                "webhooks.crm: object missing required field 'secrets_env'",
            ),
            (
                "{url: 'ftp://x.example', exchange: orders, events: [OrderConfirmed], "
                "secrets_env: [S]}",
                "webhooks.crm.url: expected an http:// or https:// URL, got 'ftp://x.example'",
            ),
            (
                "{url: 'https://x.example', exchange: orders, events: [OrderConfirmed], "
                "secrets_env: [S], retry: {delays: [1s, 1s]}}",
                "webhooks.crm.retry.delays: a delay is listed twice",
            ),
            (
                "{url: 'https://x.example', exchange: orders, secrets_env: [S], "
                "events: [{contract: OrderConfirmed, exchange: nowhere}]}",
                "webhooks.crm.events[0].exchange: unknown exchange 'nowhere' "
                "(known: orders, payments)",
            ),
            (
                "{url: 'https://x.example', exchange: orders, events: [OrderConfirmed], "
                "secrets_env: [S], timeout: soon}",
                "webhooks.crm.timeout: invalid duration 'soon': write a whole number and a "
                "unit, like 250ms, 5s, 30s, 5m, 1h or 1d",
            ),
        ],
    )
    def test_a_mistake_is_reported_at_its_path(self, body: str, expected: str) -> None:
        """Every error names the exact place in the file."""
        # Given
        text = EXCHANGES + f"webhooks:\n  crm: {body}\n"
        # When / Then
        assert expected in problems_of(text)

    def test_a_queue_named_like_a_subscriptions_queue_is_refused(self) -> None:
        """`webhook.<name>` belongs to the subscription."""
        # Given
        text = EXCHANGES + "queues:\n  webhook.crm: {bind: [{exchange: orders}]}\n" + SUBSCRIPTION
        # When / Then
        assert (
            "webhooks.crm: its queue 'webhook.crm' is also declared under queues: rename one"
            in problems_of(text)
        )


class TestInternalDestinations:
    """The SSRF rule as `topology check` sees it: literal hosts only, as a warning."""

    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("http://localhost:8080/x", "loopback"),
            ("http://127.0.0.1/x", "loopback"),
            ("http://[::1]/x", "loopback"),
            ("http://10.1.2.3/x", "private"),
            ("http://192.168.0.7/x", "private"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://0.0.0.0/x", "unspecified"),
            ("http://100.64.0.1/x", "shared"),
            ("http://[::ffff:10.0.0.1]/x", "private"),
            ("https://hooks.example.com/x", None),
            ("https://93.184.216.34/x", None),
        ],
    )
    def test_internal_hosts_are_recognised(self, url: str, kind: str | None) -> None:
        assert literal_internal(url) == kind

    def test_a_name_is_not_an_address(self) -> None:
        assert internal_range("example.com") is None

    def test_a_literal_private_destination_without_allowance_is_warned_about(self) -> None:
        """It would be refused at every delivery, so `check` says so up front."""
        # Given
        text = EXCHANGES + SUBSCRIPTION.replace(
            "https://crm.example.com/hooks", "http://10.0.0.5/h"
        )
        # When / Then
        assert warnings_of(text) == [
            "warning: webhooks.crm.url: 10.0.0.5 is a private address: every delivery will "
            "be refused (SSRF guard) unless allow_private is set or allow_hosts lists it"
        ]

    @pytest.mark.parametrize(
        "allowance",
        [
            "    allow_private: true\n",
            "    allow_hosts: [10.0.0.5]\n",
            "    allow_hosts: [10.0.0.0/8]\n",
        ],
    )
    def test_an_explicit_allowance_silences_the_warning(self, allowance: str) -> None:
        # Given
        text = (
            EXCHANGES
            + SUBSCRIPTION.replace("https://crm.example.com/hooks", "http://10.0.0.5/h")
            + allowance
        )
        # When / Then
        assert warnings_of(text) == []


class TestContracts:
    """`topology check` resolves the subscribed contracts against the registry."""

    def test_known_contracts_pass(self) -> None:
        assert check_webhook_contracts(loads(EXCHANGES + SUBSCRIPTION), default_registry) == []

    def test_an_unknown_contract_is_reported_at_its_path(self) -> None:
        # Given
        topology = loads(EXCHANGES + SUBSCRIPTION.replace("OrderConfirmed", "OrderConfirmd"))
        # When
        problems = check_webhook_contracts(topology, default_registry)
        # Then
        assert [p.path for p in problems] == ["webhooks.crm.events[0]"]
        assert "OrderConfirmd" in problems[0].message


class TestExpansion:
    """A subscription becomes a work queue with retry tiers and a dead-letter queue."""

    def test_the_queue_is_bound_to_each_events_routing_key(self) -> None:
        """Each contract's own routing key, on the subscription's or the event's exchange."""
        # Given
        topology = loads(EXCHANGES + SUBSCRIPTION)
        # When
        resources = expand(topology)
        # Then
        assert [b for b in resources.bindings if b.source != "webhook.crm.failures"] == [
            BindingDecl(source="orders", destination="webhook.crm", routing_key="order.confirmed"),
            BindingDecl(
                source="payments", destination="webhook.crm", routing_key="payment.refunded"
            ),
        ]

    def test_retry_tiers_dead_letter_back_and_a_dead_queue_parks(self) -> None:
        """Like a worker's queue: `<q>.retry.<delay>` returns to `<q>` after its TTL."""
        # Given
        topology = loads(EXCHANGES + SUBSCRIPTION + "    retry: {delays: [200ms, 500ms]}\n")
        # When
        queues = {q.name: q for q in expand(topology).queues}
        # Then
        assert list(queues) == [
            "webhook.crm",
            "webhook.crm.retry.200ms",
            "webhook.crm.retry.500ms",
            "webhook.crm.dead",
        ]
        tier = queues["webhook.crm.retry.500ms"]
        assert tier.arguments["x-message-ttl"] == 500
        assert tier.arguments["x-dead-letter-routing-key"] == "webhook.crm"
        assert queues["webhook.crm"].arguments["x-dead-letter-routing-key"] == "webhook.crm.dead"

    def test_the_dispatcher_publishes_failures_to_the_queues_failure_exchange(self) -> None:
        """`webhook.<name>.failures` routes to each retry tier and the dead-letter queue."""
        # Given
        topology = loads(EXCHANGES + SUBSCRIPTION + "    retry: {delays: [200ms]}\n")
        # When
        resources = expand(topology)
        # Then
        assert ExchangeDecl(name="webhook.crm.failures", type="direct") in resources.exchanges
        assert {
            (b.routing_key, b.destination)
            for b in resources.bindings
            if b.source == "webhook.crm.failures"
        } == {
            ("webhook.crm", "webhook.crm"),
            ("webhook.crm.retry.200ms", "webhook.crm.retry.200ms"),
            ("webhook.crm.dead", "webhook.crm.dead"),
        }

    def test_an_explicit_routing_key_needs_no_registered_contract(self) -> None:
        """A contract published under another key, or not importable here, names its key."""
        # Given
        topology = loads(
            EXCHANGES
            + SUBSCRIPTION.replace(
                "[OrderConfirmed,", "[{contract: Elsewhere, routing_key: other.thing},"
            )
        )
        # When
        bindings = expand(topology).bindings
        # Then
        assert bindings[0].routing_key == "other.thing"

    def test_an_unregistered_contract_without_a_routing_key_cannot_expand(self) -> None:
        # Given
        topology = loads(EXCHANGES + SUBSCRIPTION.replace("OrderConfirmed", "Nowhere"))
        # When
        with pytest.raises(TopologyInvalid) as caught:
            expand(topology)
        # Then
        assert caught.value.problems[0].path == "webhooks.crm.events[0]"


class TestGraph:
    def test_a_subscription_is_drawn_fed_by_its_events(self) -> None:
        """`fleet topology graph` shows where each subscribed event leaves the fleet."""
        # When
        text = mermaid(loads(EXCHANGES + SUBSCRIPTION))
        # Then
        assert text.splitlines()[-3:] == [
            '    wh_crm[/"crm webhook: https://crm.example.com/hooks"/]',
            '    ex_orders -->|"OrderConfirmed"| wh_crm',
            '    ex_payments -->|"PaymentRefunded"| wh_crm',
        ]
