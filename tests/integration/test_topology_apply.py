"""plan and apply against a real RabbitMQ: each test in its own vhost."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Broker
from topology import BrokerUnreachable, Topology, UnsafeChange, expand, loads
from topology.apply import ApplyResult, apply, survey
from topology.management import Management, management_url_from, vhost_from
from topology.names import RECORD_QUEUE
from topology.plan import NO_CHANGES, Change, Plan
from topology.record import Record, read_record

PAYMENTS = """
exchanges:
  orders: {type: topic}
  inventory: {type: direct}
queues:
  payments:
    type: %(type)s
    bind:
      - {exchange: orders, routing_key: order.placed}
%(extra_binding)s
    retry: {delays: [5s]}
  audit:
    type: classic
    arguments: {x-max-length: 1000}
    bind:
      - {exchange: orders, routing_key: "order.#"}
"""


def payments_topology(queue_type: str = "quorum", *, with_stock_binding: bool = False) -> Topology:
    """Two exchanges, a 'payments' queue with one retry tier, and a classic 'audit' queue."""
    extra = (
        "      - {exchange: inventory, routing_key: stock.reserved}" if with_stock_binding else ""
    )
    return loads(PAYMENTS % {"type": queue_type, "extra_binding": extra})


async def apply_to(broker: Broker, topology: Topology, **options: Any) -> ApplyResult:
    """`apply` on the test's vhost, through the test broker's own management API."""
    return await apply(topology, broker.amqp_url, management_url=broker.management_url, **options)


def survey_of(broker: Broker, topology: Topology) -> tuple[Plan, Record | None]:
    """`survey` of the test's vhost for what `topology` expands to."""
    return survey(expand(topology), broker.amqp_url, management_url=broker.management_url)


def management_of(broker: Broker) -> Management:
    """The management API client of the test's vhost."""
    return Management.for_broker(broker.amqp_url, broker.management_url)


def api_get(broker: Broker, kind: str, name: str = "") -> Any:
    """GET /api/<kind>/<vhost>[/<name>] from the management API."""
    path = f"/api/{kind}/{quote(broker.vhost, safe='')}"
    if name:
        path += f"/{quote(name, safe='')}"
    with broker.api() as api:
        response = api.get(path)
        response.raise_for_status()
        return response.json()


def bindings_on(broker: Broker, *, failures: bool = False) -> set[tuple[str, str, str]]:
    """(source, destination, routing key) of every binding but the default exchange's, and
    but those of the failure exchanges unless `failures` is set."""
    return {
        (b["source"], b["destination"], b["routing_key"])
        for b in api_get(broker, "bindings")
        if b["source"] and (failures or not b["source"].endswith(".failures"))
    }


def delete_by_hand(broker: Broker, kind: str, name: str) -> None:
    """Delete a queue or exchange through the management API, as an operator would."""
    with broker.api() as api:
        api.delete(
            f"/api/{kind}/{quote(broker.vhost, safe='')}/{quote(name, safe='')}"
        ).raise_for_status()


class TestApply:
    """apply makes the vhost match the file, and only then records it."""

    async def test_apply_creates_exactly_what_the_file_declares(self, broker: Broker) -> None:
        """Queues, types, arguments and bindings on the broker are the file's, no more."""
        # Given
        topology = payments_topology()
        # When
        result = await apply_to(broker, topology)
        # Then
        queues = {q["name"]: q for q in api_get(broker, "queues")}
        assert set(queues) == {
            "payments",
            "payments.retry.5s",
            "payments.dead",
            "audit",
            "audit.retry.5s",
            "audit.retry.30s",
            "audit.retry.5m",
            "audit.dead",
            RECORD_QUEUE,
        }
        assert queues["payments"]["type"] == "quorum"
        assert queues["payments"]["arguments"] == {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "payments.dead",
            "x-delivery-limit": 20,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        assert queues["payments.retry.5s"]["arguments"]["x-message-ttl"] == 5000
        assert queues["audit"]["type"] == "classic"
        assert queues["audit"]["arguments"]["x-max-length"] == 1000
        exchanges = {e["name"]: e["type"] for e in api_get(broker, "exchanges")}
        assert (exchanges["orders"], exchanges["inventory"]) == ("topic", "direct")
        assert (exchanges["payments.failures"], exchanges["audit.failures"]) == ("direct", "direct")
        assert bindings_on(broker, failures=True) == {
            ("orders", "payments", "order.placed"),
            ("orders", "audit", "order.#"),
            *(
                (f"{queue}.failures", target, target)
                for queue, targets in {
                    "payments": ["payments", "payments.retry.5s", "payments.dead"],
                    "audit": [
                        "audit",
                        "audit.retry.5s",
                        "audit.retry.30s",
                        "audit.retry.5m",
                        "audit.dead",
                    ],
                }.items()
                for target in targets
            ),
        }
        # 2 exchanges, 2 failure exchanges, 8 queues, 2 bindings and 8 failure routes
        assert result.summary() == "Applied: 22 created."

    async def test_a_second_apply_changes_nothing(self, broker: Broker) -> None:
        """apply is idempotent: right after an apply, the plan is empty and nothing is rewritten."""
        # Given
        topology = payments_topology()
        await apply_to(broker, topology)
        with management_of(broker) as api:
            first = read_record(api)
        # When
        result = await apply_to(broker, topology)
        # Then
        assert result.applied == []
        assert result.summary() == NO_CHANGES
        with management_of(broker) as api:
            second = read_record(api)
        assert first is not None
        assert second == first

    async def test_apply_records_what_it_applied_in_the_broker(self, broker: Broker) -> None:
        """The record queue holds one message: the last applied resources and the file digest."""
        # Given
        await apply_to(broker, payments_topology(), file_sha256="a" * 64)
        # When
        await apply_to(broker, payments_topology(with_stock_binding=True), file_sha256="b" * 64)
        # Then
        with management_of(broker) as api:
            record = read_record(api)
        assert record is not None
        assert record.file_sha256 == "b" * 64
        assert record.resources == expand(payments_topology(with_stock_binding=True))
        assert api_get(broker, "queues", RECORD_QUEUE)["arguments"]["x-max-length"] == 1

    async def test_plan_shows_drift_after_a_queue_is_deleted_by_hand(self, broker: Broker) -> None:
        """A queue fleet applied and an operator deleted is drift, and apply repairs it."""
        # Given
        topology = payments_topology()
        await apply_to(broker, topology)
        delete_by_hand(broker, "queues", "payments")
        # When
        current, _ = survey_of(broker, topology)
        # Then
        assert [(c.kind, c.resource.key) for c in current.changes] == [
            ("drift", "queue payments"),
            ("drift", "binding orders → payments [order.placed]"),
            ("drift", "binding payments.failures → payments [payments]"),
        ]
        result = await apply_to(broker, topology)
        assert result.summary() == "Applied: 3 repaired."
        assert ("orders", "payments", "order.placed") in bindings_on(broker)

    async def test_changing_a_queue_type_is_refused_without_recreate(self, broker: Broker) -> None:
        """RabbitMQ cannot change a queue's type in place, so apply refuses and touches nothing."""
        # Given
        await apply_to(broker, payments_topology("classic"))
        # When
        with pytest.raises(UnsafeChange) as raised:
            await apply_to(broker, payments_topology("quorum"))
        # Then
        message = str(raised.value)
        assert "queue 'payments': type classic → quorum, " in message
        assert "rerun with --recreate (deletes the queue and its messages)" in message
        assert api_get(broker, "queues", "payments")["type"] == "classic"

    async def test_changing_a_queue_type_with_recreate_deletes_and_declares_it(
        self, broker: Broker
    ) -> None:
        """With recreate, the queue comes back with its new type and its bindings."""
        # Given
        await apply_to(broker, payments_topology("classic"))
        asked: list[list[Change]] = []

        def confirm(unsafe: list[Change]) -> bool:
            asked.append(unsafe)
            return True

        # When
        result = await apply_to(broker, payments_topology("quorum"), recreate=True, confirm=confirm)
        # Then
        assert [c.resource.key for c in asked[0]] == [
            "queue payments",
            "queue payments.dead",
            "queue payments.retry.5s",
        ]
        assert api_get(broker, "queues", "payments")["type"] == "quorum"
        assert ("orders", "payments", "order.placed") in bindings_on(broker)
        assert result.summary() == "Applied: 3 changed."
        again, _ = survey_of(broker, payments_topology("quorum"))
        assert again.changes == []

    async def test_a_declined_recreate_changes_nothing(self, broker: Broker) -> None:
        """Answering no to the confirmation leaves the broker as it was."""
        # Given
        await apply_to(broker, payments_topology("classic"))
        # When
        result = await apply_to(
            broker, payments_topology("quorum"), recreate=True, confirm=lambda _: False
        )
        # Then
        assert result.declined
        assert result.applied == []
        assert api_get(broker, "queues", "payments")["type"] == "classic"

    async def test_a_dropped_binding_is_removed_and_unmanaged_ones_are_kept(
        self, broker: Broker
    ) -> None:
        """apply unbinds what it made and the file dropped, never what someone else made."""
        # Given
        await apply_to(broker, payments_topology(with_stock_binding=True))
        with broker.api() as api:
            api.post(
                f"/api/bindings/{quote(broker.vhost, safe='')}/e/inventory/q/audit",
                json={"routing_key": "stock.audited"},
            ).raise_for_status()
        progress: list[str] = []
        # When
        result = await apply_to(
            broker, payments_topology(), on_change=lambda c: progress.append(c.headline)
        )
        # Then
        assert progress == ["- binding inventory → payments [stock.reserved]"]
        assert result.summary() == "Applied: 1 removed."
        assert bindings_on(broker) == {
            ("orders", "payments", "order.placed"),
            ("orders", "audit", "order.#"),
            ("inventory", "audit", "stock.audited"),
        }
        current, _ = survey_of(broker, payments_topology())
        assert [(c.kind, c.resource.key) for c in current.changes] == [
            ("unmanaged", "binding inventory → audit [stock.audited]")
        ]

    async def test_a_declaration_the_broker_refuses_names_the_object(self, broker: Broker) -> None:
        """A precondition failure from RabbitMQ becomes an UnsafeChange naming the queue."""

        # Given: an operator declares 'audit' by hand while apply is creating the exchanges
        def race(change: Change) -> None:
            if change.resource.key == "exchange orders":
                with broker.api() as api:
                    api.put(
                        f"/api/queues/{quote(broker.vhost, safe='')}/audit",
                        json={"durable": True, "arguments": {"x-max-length": 5}},
                    ).raise_for_status()

        # When / Then
        with pytest.raises(
            UnsafeChange,
            match=r"^queue 'audit': the broker refused it: PRECONDITION_FAILED - inequivalent arg",
        ):
            await apply_to(broker, payments_topology(), on_change=race)

    async def test_apply_on_an_unreachable_amqp_port_fails_with_broker_unreachable(
        self, broker: Broker
    ) -> None:
        """The management API answers but AMQP does not: one line saying so."""
        # Given
        url = broker.amqp_url_on_port(1)
        # When / Then
        with pytest.raises(BrokerUnreachable, match=r"cannot reach RabbitMQ at .*:1: connection"):
            await apply(payments_topology(), url, management_url=broker.management_url)


class TestPlanAgainstTheBroker:
    """survey() reads the live vhost and the record into a plan."""

    def test_plan_on_an_unreachable_broker_fails_with_broker_unreachable(
        self, broker: Broker
    ) -> None:
        """No management API at the URL: the error says how to enable it."""
        # Given
        desired = expand(payments_topology())
        # When / Then
        with pytest.raises(BrokerUnreachable, match=r"connection refused.*rabbitmq-plugins enable"):
            survey(desired, broker.amqp_url, management_url="http://127.0.0.1:1")

    def test_plan_before_any_apply_creates_everything(self, broker: Broker) -> None:
        """A fresh vhost has no record, so every declared object is a create."""
        # Given
        desired = expand(payments_topology())
        # When
        current, record = survey(desired, broker.amqp_url, management_url=broker.management_url)
        # Then
        assert record is None
        assert {c.kind for c in current.changes} == {"create"}
        assert len(current.pending) == 22


class TestManagement:
    """The management API client: URLs, vhosts and the errors a user can act on."""

    @pytest.mark.parametrize(
        ("amqp_url", "expected"),
        [
            ("amqp://guest:guest@127.0.0.1:5672/", "http://guest:guest@127.0.0.1:15672"),
            ("amqps://u%40x:p%2Fw@rabbit.example/prod", "https://u%40x:p%2Fw@rabbit.example:15671"),
            ("amqp://rabbit", "http://rabbit:15672"),
        ],
    )
    def test_the_management_url_is_derived_from_the_amqp_url(
        self, amqp_url: str, expected: str
    ) -> None:
        """Same host and credentials, the management port, http or https to match."""
        # Given / When / Then
        assert management_url_from(amqp_url) == expected

    @pytest.mark.parametrize(
        ("amqp_url", "vhost"),
        [
            ("amqp://guest:guest@localhost:5672", "/"),
            ("amqp://guest:guest@localhost:5672/", "/"),
            ("amqp://guest:guest@localhost:5672/%2F", "/"),
            ("amqp://guest:guest@localhost:5672/shop%2Feu", "shop/eu"),
        ],
    )
    def test_the_vhost_is_the_url_decoded_path(self, amqp_url: str, vhost: str) -> None:
        """An empty path means the default vhost '/'."""
        # Given / When / Then
        assert vhost_from(amqp_url) == vhost

    def test_an_explicit_management_url_without_credentials_borrows_the_amqp_ones(
        self, broker: Broker
    ) -> None:
        """--management-url need not repeat the user and password."""
        # Given
        with Management.for_broker(broker.amqp_url, broker.management_base) as api:
            # When
            queues = api.queues()
        # Then
        assert queues == []
        assert api.vhost == broker.vhost

    def test_wrong_credentials_are_reported_as_such(self, broker: Broker) -> None:
        """A 401 names the user and where to fix the credentials."""
        # Given
        url = broker.amqp_url.replace("guest:guest@", "guest:wrong@")
        # When / Then
        with (
            Management.for_broker(url, broker.management_base) as api,
            pytest.raises(BrokerUnreachable, match=r"refused user 'guest' \(401\)"),
        ):
            api.queues()

    def test_a_missing_vhost_is_reported_as_such(self, broker: Broker) -> None:
        """Listing a vhost that does not exist says so, rather than showing an empty broker."""
        # Given
        url = broker.amqp_url + "-missing"
        # When / Then
        with (
            Management.for_broker(url, broker.management_base) as api,
            pytest.raises(BrokerUnreachable, match=r"vhost '.*-missing' does not exist"),
        ):
            api.exchanges()

    def test_peek_leaves_the_message_in_the_queue(self, broker: Broker) -> None:
        """Reading the record, or a dead letter, never consumes it."""
        # Given
        with broker.api() as api:
            vhost = quote(broker.vhost, safe="")
            api.put(f"/api/queues/{vhost}/parked", json={"durable": True}).raise_for_status()
            api.post(
                f"/api/exchanges/{vhost}/amq.default/publish",
                json={
                    "routing_key": "parked",
                    "payload": "héllo",
                    "payload_encoding": "string",
                    "properties": {"headers": {"reason": "test"}},
                },
            ).raise_for_status()
        with management_of(broker) as management:
            # When
            first = management.peek("parked")
            second = management.peek("parked")
            missing = management.peek("no-such-queue")
        # Then
        assert first is not None
        assert second is not None
        assert [m.payload for m in first] == [m.payload for m in second] == ["héllo".encode()]
        assert first[0].properties["headers"] == {"reason": "test"}
        assert missing is None
