"""Least privilege: which broker user each process gets and what it may do, without a broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fulfilment.contracts  # noqa: F401  (the ingress routes name their contracts)
import pytest
import structlog
from click.testing import CliRunner, Result
from fulfilment import TOPOLOGY_FILE

from topology import (
    EventRoute,
    Permissions,
    TopicPermission,
    UserDecl,
    WorkerWiring,
    loads,
)
from topology.access import broker_users, escape, ingress_user, pattern
from topology.apply import desired_resources
from topology.errors import TopologyError, TopologyInvalid

SHOP = """
exchanges:
  orders: {type: topic}
  inventory: {type: topic}
  audit: {type: fanout}
queues:
  inventory: {bind: [{exchange: orders, routing_key: order.placed}]}
  auditor: {bind: [{exchange: audit}]}
  silent: {bind: [{exchange: orders, routing_key: order.placed}]}
workers:
  inventory: {module: m, queue: inventory, publish_to: inventory}
  auditor: {module: m, queue: auditor, publish_to: audit}
  silent: {module: m, queue: silent, publish_to: orders}
access: {users: true}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def fleet(*args: str) -> Result:
    """`fleet ARGS...` in process."""
    from workers.cli import _register_commands, cli

    _register_commands()
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet")


RESERVED = EventRoute(name="StockReserved", routing_key="stock.reserved")
REJECTED = EventRoute(name="StockRejected", routing_key="stock.rejected")
PLACED = EventRoute(name="OrderPlaced", routing_key="order.placed")

WIRING = {
    "inventory": WorkerWiring(handles=[PLACED], emits=[RESERVED, REJECTED]),
    "auditor": WorkerWiring(handles=[PLACED], emits=[REJECTED]),
    "silent": WorkerWiring(handles=[PLACED], emits=[]),
}


def users_of(text: str, wiring: dict[str, WorkerWiring] | None = None) -> dict[str, UserDecl]:
    """The users a topology asks for, by name."""
    return {u.name: u for u in broker_users(loads(text), wiring or WIRING)}


class TestPatterns:
    """Names become anchored regular expressions that match them and nothing else."""

    def test_one_name_is_matched_exactly(self) -> None:
        """Dots are literal, and the name is anchored at both ends."""
        # Given / When / Then
        assert pattern(["order.placed"]) == r"^order\.placed$"

    def test_several_names_are_one_group_in_a_stable_order(self) -> None:
        """Sorted and deduplicated, so the same topology always gives the same text."""
        # Given / When / Then
        assert pattern(["b", "a.x", "b"]) == r"^(a\.x|b)$"

    def test_no_names_allow_nothing(self) -> None:
        """RabbitMQ reads '' as: no resource at all."""
        # Given / When / Then
        assert pattern([]) == ""

    def test_every_regular_expression_character_is_escaped(self) -> None:
        """A name is a literal, whatever it holds."""
        # Given / When / Then
        assert escape("a.b*c+(d)|e$^[f]{g}?\\") == r"a\.b\*c\+\(d\)\|e\$\^\[f\]\{g\}\?\\"


class TestWorkerUsers:
    """A worker's user reads its queue and writes its exchanges, nothing else."""

    def test_a_worker_writes_its_exchange_and_failure_exchange_and_reads_its_queue(
        self,
    ) -> None:
        """No configure; write publish_to and <queue>.failures; read the queue."""
        # Given / When
        user = users_of(SHOP)["fleet-inventory"]
        # Then
        assert user.permissions == Permissions(
            configure="",
            write=r"^(inventory|inventory\.failures)$",
            read="^inventory$",
        )
        assert user.process == "worker inventory"
        assert user.tags == []

    def test_on_a_topic_exchange_only_the_emitted_routing_keys_may_be_published(self) -> None:
        """The topic permission lists the keys of the events its handlers return."""
        # Given / When
        user = users_of(SHOP)["fleet-inventory"]
        # Then
        assert user.topics == [
            TopicPermission(
                exchange="inventory", write=r"^(stock\.rejected|stock\.reserved)$", read=""
            )
        ]

    def test_other_exchange_types_get_no_topic_permission(self) -> None:
        """RabbitMQ checks topic permissions on topic exchanges only."""
        # Given / When
        user = users_of(SHOP)["fleet-auditor"]
        # Then
        assert user.topics == []
        assert user.permissions.write == r"^(audit|auditor\.failures)$"

    def test_a_worker_that_emits_nothing_may_not_write_its_publish_to_exchange(self) -> None:
        """Its failure exchange is all it publishes to."""
        # Given / When
        user = users_of(SHOP)["fleet-silent"]
        # Then
        assert user.permissions.write == r"^silent\.failures$"
        assert user.topics == []

    def test_a_worker_with_faults_may_announce_them_for_what_it_handles_only(self) -> None:
        """`faults: inventory`: write there too, with fault.<handled key> beside its events."""
        # Given
        text = SHOP.replace(
            "inventory: {module: m, queue: inventory, publish_to: inventory}",
            "inventory: {module: m, queue: inventory, publish_to: inventory, faults: inventory}",
        ).replace(
            "silent: {module: m, queue: silent, publish_to: orders}",
            "silent: {module: m, queue: silent, publish_to: orders, faults: orders}",
        )
        # When
        users = users_of(text)
        # Then
        assert users["fleet-inventory"].topics == [
            TopicPermission(
                exchange="inventory",
                write=r"^(fault\.order\.placed|stock\.rejected|stock\.reserved)$",
                read="",
            )
        ]
        assert users["fleet-silent"].permissions.write == r"^(orders|silent\.failures)$"
        assert users["fleet-silent"].topics == [
            TopicPermission(exchange="orders", write=r"^fault\.order\.placed$", read="")
        ]

    def test_the_management_setting_tags_the_workers_users(self) -> None:
        """`access.management: true` lets their lag metrics read unacked counts."""
        # Given / When
        users = users_of(SHOP.replace("{users: true}", "{users: true, management: true}"))
        # Then
        assert users["fleet-inventory"].tags == ["management"]

    def test_the_prefix_names_the_users(self) -> None:
        """`access.prefix` replaces `fleet-`."""
        # Given / When
        users = users_of(SHOP.replace("{users: true}", "{users: true, prefix: shop-}"))
        # Then
        assert sorted(users) == ["shop-auditor", "shop-inventory", "shop-silent"]

    def test_without_access_users_there_are_none(self) -> None:
        """Off by default: existing files behave as before."""
        # Given / When / Then
        assert users_of(SHOP.replace("access: {users: true}\n", "")) == {}


class TestTheReferenceFleet:
    """The reference fleet's fleet.yaml under access.users, with its handlers' real wiring."""

    def test_each_worker_may_publish_only_what_its_handlers_emit(self) -> None:
        """inventory's user may publish stock.* keys to inventory and nothing else."""
        # Given
        from workers.loader import load_worker

        topology = loads(TOPOLOGY_FILE.read_text() + "\naccess: {users: true}\n")
        wiring = {n: load_worker(n, s).wiring() for n, s in topology.workers.items()}
        # When
        users = {u.name: u for u in broker_users(topology, wiring)}
        # Then
        assert sorted(users) == [
            "fleet-ingress",
            "fleet-inventory",
            "fleet-notifications",
            "fleet-orders",
            "fleet-outbox",
            "fleet-payments",
            "fleet-reporting",
            "fleet-shipping",
            "fleet-webhooks",
        ]
        # The outbox relay publishes what the web shop and /orders/outbox record.
        assert users["fleet-outbox"].topics == [
            TopicPermission(exchange="orders", write=r"^order\.placed$", read="")
        ]
        assert users["fleet-orders"].topics == [
            TopicPermission(
                exchange="orders",
                write=(
                    r"^(fault\.order\.deadline|fault\.order\.placed|fault\.shipment\.scheduled"
                    r"|fault\.stock\.rejected|fault\.stock\.released"
                    r"|order\.cancelled|order\.confirmed|order\.deadline)$"
                ),
                read="",
            )
        ]
        assert users["fleet-notifications"].permissions == Permissions(
            write=r"^notifications\.failures$", read="^notifications$"
        )


class TestIngressUser:
    """The ingress publishes its routes' events; a synchronous route also waits for answers."""

    ROUTES = """
exchanges: {orders: {type: topic}, payments: {type: direct}}
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
    /refunds: {contract: PaymentRefunded, exchange: payments}
access: {users: true}
"""

    def test_it_writes_its_routes_exchanges_with_their_routing_keys(self) -> None:
        """The contract's own key, or the route's; topic exchanges only get a topic permission."""
        # Given / When
        user = users_of(self.ROUTES)["fleet-ingress"]
        # Then
        assert user.permissions == Permissions(configure="", write="^(orders|payments)$", read="")
        assert user.topics == [
            TopicPermission(exchange="orders", write=r"^order\.placed$", read="")
        ]

    def test_a_synchronous_route_may_declare_bind_and_consume_a_server_named_queue(
        self,
    ) -> None:
        """configure and read its answer queue, read the reply exchange, bind the answers' keys."""
        # Given
        text = self.ROUTES.replace(
            "/orders: {contract: OrderPlaced, exchange: orders}",
            "/orders: {contract: OrderPlaced, exchange: orders, "
            "reply: {events: [OrderConfirmed, OrderCancelled], exchange: orders}}",
        )
        # When
        user = users_of(text)["fleet-ingress"]
        # Then
        assert user.permissions == Permissions(
            configure=r"^amq\.gen-.*",
            write=r"^(orders|payments)$|^amq\.gen-.*",
            read=r"^orders$|^amq\.gen-.*",
        )
        assert user.topics == [
            TopicPermission(
                exchange="orders",
                write=r"^order\.placed$",
                read=r"^(order\.cancelled|order\.confirmed)$",
            )
        ]

    def test_a_route_with_an_unregistered_contract_cannot_be_granted(self) -> None:
        """Its routing key is the contract's, so the contract must be known."""
        # Given
        text = self.ROUTES.replace("contract: OrderPlaced", "contract: NoSuchEvent")
        # When / Then
        with pytest.raises(LookupError, match="NoSuchEvent"):
            users_of(text)


class TestWebhooksUser:
    """The dispatcher reads its subscriptions' queues and writes their failure exchanges."""

    def test_it_reads_each_webhook_queue_and_writes_its_failure_exchange(self) -> None:
        """One user for every subscription: the dispatcher runs them all in one process."""
        # Given
        text = """
exchanges: {orders: {type: topic}}
webhooks:
  crm: {url: "https://crm.example/h", exchange: orders, events: [OrderConfirmed],
        secrets_env: [S]}
  erp: {url: "https://erp.example/h", exchange: orders, events: [OrderCancelled],
        secrets_env: [S]}
access: {users: true}
"""
        # When
        user = users_of(text)["fleet-webhooks"]
        # Then
        assert user.permissions == Permissions(
            configure="",
            write=r"^(webhook\.crm\.failures|webhook\.erp\.failures)$",
            read=r"^(webhook\.crm|webhook\.erp)$",
        )


class TestNames:
    """User names may not collide."""

    def test_a_worker_named_like_another_process_is_refused(self) -> None:
        """A worker 'ingress' would share fleet-ingress with the HTTP ingress."""
        # Given
        text = (
            "exchanges: {orders: {}}\nqueues: {q: {bind: [{exchange: orders}]}}\n"
            "workers: {ingress: {module: m, queue: q}}\naccess: {users: true}\n"
        )
        # When
        with pytest.raises(TopologyInvalid) as refused:
            loads(text)
        # Then
        assert [str(p) for p in refused.value.problems] == [
            "workers.ingress: with access.users, worker 'ingress' would share the broker user "
            "'fleet-ingress' with the ingress process: rename the worker"
        ]

    def test_an_unknown_access_setting_is_refused_with_the_valid_ones(self) -> None:
        """A typo fails instead of leaving access open."""
        # Given
        text = "exchanges: {orders: {}}\naccess: {user: true}\n"
        # When
        with pytest.raises(TopologyInvalid) as refused:
            loads(text)
        # Then
        assert "unknown field 'user' (valid: users, prefix, management)" in str(refused.value)


class TestUsersCommand:
    """`fleet topology users`: each user, what it may do and how its process connects."""

    def test_it_prints_each_users_rights_and_connect_line(self, tmp_path: Path) -> None:
        """The URL names the user and no password: the process takes FLEET_PASSWORD_<USER>."""
        # Given
        path = tmp_path / "t.yaml"
        path.write_text(
            "exchanges: {orders: {}, inventory: {}}\n"
            "queues: {echo: {bind: [{exchange: orders, routing_key: order.placed}]}}\n"
            "workers: {echo: {module: tests.fixtures.echo_worker, queue: echo, "
            "publish_to: inventory}}\n"
            "access: {users: true}\n"
        )
        # When
        result = fleet("topology", "users", "--file", str(path), "--url", "amqp://g:g@rabbit/shop")
        # Then
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [
            "fleet-echo  (worker echo)",
            "  configure  ''",
            r"  write      ^(echo\.failures|inventory)$",
            "  read       ^echo$",
            r"  topic      inventory: write ^stock\.rejected$, read ''",
            "  password   FLEET_PASSWORD_FLEET_ECHO",
            "  connect    fleet worker run echo --url amqp://fleet-echo@rabbit/shop",
        ]

    def test_without_access_users_it_says_so(self, tmp_path: Path) -> None:
        """One line, exit 1: there are no users to show."""
        # Given
        path = tmp_path / "t.yaml"
        path.write_text("exchanges: {orders: {}}\n")
        # When
        result = fleet("topology", "users", "--file", str(path))
        # Then
        assert result.exit_code == 1
        assert result.output == (
            "error: the topology has no access.users: true (its processes share the --url user)\n"
        )

    def test_the_help_ends_with_examples(self) -> None:
        """Every --help does."""
        # Given / When
        result = fleet("topology", "users", "--help")
        # Then
        assert result.exit_code == 0
        assert result.output.rstrip().splitlines()[-3].strip() == "Examples:"


class TestDesiredResources:
    """What apply and plan compare: the expanded objects, and the users with their rights."""

    def test_a_worker_without_wiring_is_an_error_naming_it(self) -> None:
        """Its permissions come from its handlers: without them there is nothing to grant."""
        # Given
        topology = loads(SHOP)
        # When
        with pytest.raises(TopologyError) as refused:
            desired_resources(topology, {"inventory": WIRING["inventory"]})
        # Then
        assert str(refused.value) == (
            "access.users: the permissions of worker 'auditor' come from its handlers, and "
            "its module could not be imported"
        )

    def test_a_topology_without_workers_needs_no_wiring(self) -> None:
        """The webhook dispatcher's user comes from the file alone."""
        # Given
        topology = loads(
            "exchanges: {orders: {}}\n"
            "webhooks: {crm: {url: 'https://crm.example/h', exchange: orders, "
            "events: [OrderConfirmed], secrets_env: [S]}}\n"
            "access: {users: true}\n"
        )
        # When
        resources = desired_resources(topology)
        # Then
        assert [u.name for u in resources.users] == ["fleet-webhooks"]


class TestUp:
    """`fleet up` under access.users runs every process as its own user."""

    def test_a_user_without_a_password_stops_it_before_anything_starts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Exit 2 and one line naming the variables to set; no broker is asked."""
        # Given
        monkeypatch.delenv("FLEET_PASSWORD_FLEET_ECHO", raising=False)
        path = tmp_path / "t.yaml"
        path.write_text(
            "exchanges: {orders: {}, inventory: {}}\n"
            "queues: {echo: {bind: [{exchange: orders, routing_key: order.placed}]}}\n"
            "workers: {echo: {module: tests.fixtures.echo_worker, queue: echo, "
            "publish_to: inventory}}\n"
            "access: {users: true}\n"
        )
        # When
        result = fleet("up", "--file", str(path), "--no-apply", "--database-url", "")
        # Then
        assert result.exit_code == 2
        assert result.output.splitlines()[-1] == (
            "error: access.users: every process connects as its own user, and these have no "
            "password: fleet-echo (set FLEET_PASSWORD_FLEET_ECHO, or give --passwords-file)"
        )


class TestOutboxUser:
    """The outbox relay publishes the contracts its `publishes` names, nothing else."""

    OUTBOX = """
exchanges: {orders: {type: topic}, payments: {type: direct}}
outbox:
  publishes: {orders: [OrderPlaced, OrderCancelled], payments: [PaymentRefunded]}
access: {users: true}
"""

    def test_it_writes_the_exchanges_with_the_contracts_routing_keys(self) -> None:
        # Given / When
        user = users_of(self.OUTBOX)["fleet-outbox"]
        # Then
        assert user.process == "outbox"
        assert user.permissions == Permissions(configure="", write="^(orders|payments)$", read="")
        assert user.topics == [
            TopicPermission(exchange="orders", write=r"^(order\.cancelled|order\.placed)$", read="")
        ]

    def test_without_an_outbox_there_is_no_relay_user(self) -> None:
        assert "fleet-outbox" not in users_of(SHOP)

    def test_a_worker_named_outbox_would_share_the_relays_user(self) -> None:
        text = SHOP.replace("  silent: {module: m, queue: silent, publish_to: orders}",
                            "  outbox: {module: m, queue: silent, publish_to: orders}")  # fmt: skip
        with pytest.raises(TopologyInvalid, match="share the broker user 'fleet-outbox'"):
            loads(text)


class TestIngressAcceptingIntoTheOutbox:
    def test_a_route_the_relay_publishes_gives_the_ingress_no_write(self) -> None:
        topology = loads(
            """
exchanges: {orders: {type: topic}, payments: {type: direct}}
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders, accept: outbox}
    /refunds: {contract: PaymentRefunded, exchange: payments}
outbox: {publishes: {orders: [OrderPlaced]}}
access: {users: true}
"""
        )
        user = ingress_user(topology)
        assert user is not None
        assert user.permissions.write == r"^payments$"
        assert user.topics == []
