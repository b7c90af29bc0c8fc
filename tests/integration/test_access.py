"""Least privilege on a real broker: `access.users` makes a user per process, each
refused (403 ACCESS_REFUSED) whatever its process does not do, and a fleet still
works end to end under those users.

Users are global, not per vhost: each test's users get a prefix of their own
and are deleted afterwards, whatever the test did.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiormq
import fulfilment.contracts  # noqa: F401  (the ingress route names its contract)
import httpx
import pytest
import structlog
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result
from pamqp.commands import Basic

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from topology import MissingPassword, Topology, load
from topology.apply import apply
from topology.nodes import with_credentials
from workers.cli import EXIT_OK, EXIT_USAGE, _register_commands, cli
from workers.cli.topology import EXIT_PENDING
from workers.ingress.routes import resolve_routes
from workers.ingress.serve import assemble
from workers.loader import load_worker
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect

TOPOLOGY = """
exchanges:
  orders: {{}}
  inventory: {{}}
  payments: {{}}
queues:
  echo:
    type: classic
    bind: [{{exchange: orders, routing_key: order.placed}}]
    retry: {{attempts: 2, backoff: 10ms, max_backoff: 50ms, delays: [1s]}}
  answers:
    type: classic
    bind: [{{exchange: inventory, routing_key: "#"}}]
  ledger:
    type: classic
    bind: [{{exchange: orders, routing_key: order.placed}}]
workers:
  echo: {{module: tests.fixtures.echo_worker, queue: echo, publish_to: inventory}}
  ledger: {{module: tests.fixtures.ledger_worker, queue: ledger}}
ingress:
  routes:
    /orders:
      contract: OrderPlaced
      exchange: orders
      reply: {{events: [StockRejected], exchange: inventory}}
metrics: {{lag_interval: 1s}}
access: {{users: true, prefix: {prefix}}}
"""


class Fleet:
    """One test's topology file, its users' names and passwords, and the vhost."""

    def __init__(self, broker: Broker, tmp_path: Path, prefix: str):
        self.broker = broker
        self.prefix = prefix
        self.path = tmp_path / "topology.yaml"
        self.path.write_text(TOPOLOGY.format(prefix=prefix))
        self.topology: Topology = load(self.path)
        self.passwords = {self.user(p): f"pw-{p}-{uuid.uuid4().hex[:8]}" for p in PROCESSES}
        self.passwords_file = tmp_path / "passwords"
        self.passwords_file.write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))

    def user(self, process: str) -> str:
        return f"{self.prefix}{process}"

    def url(self, process: str) -> str:
        """The vhost's AMQP URL as the process's own user, password included."""
        user = self.user(process)
        return with_credentials(self.broker.amqp_url, user, self.passwords[user])

    async def apply(self) -> None:
        wiring = {n: load_worker(n, s).wiring() for n, s in self.topology.workers.items()}
        await apply(
            self.topology,
            self.broker.amqp_url,
            management_url=self.broker.management_url,
            wiring=wiring,
            passwords=self.passwords,
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        with self.broker.api() as api:
            response = api.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None

    @property
    def vhost(self) -> str:
        return quote(self.broker.vhost, safe="")


PROCESSES = ("echo", "ledger", "ingress")


@pytest.fixture
def fleet(broker: Broker, tmp_path: Path) -> Iterator[Fleet]:
    """The test's fleet; its users are deleted afterwards, also when the test failed."""
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    yield Fleet(broker, tmp_path, prefix)
    with broker.api() as api:
        for user in api.get("/api/users").json():
            if user["name"].startswith(prefix):
                api.delete(f"/api/users/{quote(user['name'], safe='')}")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The `fleet` group configures structlog for the process; put the old configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def fleet_cli(*args: str) -> Result:
    _register_commands()
    return CliRunner().invoke(cli, ["--log-format", "json", *args], prog_name="fleet")


async def refusal(
    url: str, operation: Callable[[aiormq.abc.AbstractChannel], Awaitable[Any]]
) -> str:
    """The broker's text when it refuses `operation` on a fresh channel (a failure if it
    lets it through)."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
            await operation(channel)
        return str(refused.value.args[0])
    finally:
        await connection.close()


async def allowed(
    url: str, operation: Callable[[aiormq.abc.AbstractChannel], Awaitable[Any]]
) -> Any:
    """What `operation` returns on a fresh channel of `url`."""
    connection = await aiormq.connect(url)
    try:
        return await operation(await connection.channel())
    finally:
        await connection.close()


def assert_refused(text: str, fleet: Fleet, process: str, access: str, resource: str) -> None:
    """`text` is RabbitMQ's refusal of `resource` to the process's user; 4.x names the
    kind of access (``write access to exchange 'payments'``), 3.x does not."""
    expected = (
        rf"ACCESS_REFUSED - ({access} )?access to {re.escape(resource)} in vhost "
        rf"'{re.escape(fleet.broker.vhost)}' refused for user '{re.escape(fleet.user(process))}'"
    )
    assert re.fullmatch(expected, text), text


def publish(
    exchange: str, routing_key: str
) -> Callable[[aiormq.abc.AbstractChannel], Awaitable[Any]]:
    return lambda channel: channel.basic_publish(b"{}", exchange=exchange, routing_key=routing_key)


class TestApply:
    """`fleet topology apply` keeps the users; `plan` shows how they drifted."""

    async def test_each_process_gets_a_user_with_only_what_it_needs(self, fleet: Fleet) -> None:
        """No tags, no configure, write its own exchanges, read its own queue."""
        # When
        await fleet.apply()
        # Then
        echo = fleet.api("GET", f"/api/permissions/{fleet.vhost}/{fleet.user('echo')}")
        assert (echo["configure"], echo["write"], echo["read"]) == (
            "",
            r"^(echo\.failures|inventory)$",
            "^echo$",
        )
        topics = fleet.api("GET", f"/api/topic-permissions/{fleet.vhost}/{fleet.user('echo')}")
        assert [(t["exchange"], t["write"], t["read"]) for t in topics] == [
            ("inventory", r"^stock\.rejected$", "")
        ]
        ledger = fleet.api("GET", f"/api/permissions/{fleet.vhost}/{fleet.user('ledger')}")
        assert (ledger["write"], ledger["read"]) == (r"^ledger\.failures$", "^ledger$")
        user = fleet.api("GET", f"/api/users/{fleet.user('echo')}")
        assert user["tags"] in ([], "")
        qos = await allowed(fleet.url("echo"), lambda channel: channel.basic_qos(prefetch_count=1))
        assert isinstance(qos, Basic.QosOk)  # the user logs in and opens the vhost

    def test_plan_shows_permissions_changed_by_hand_and_apply_repairs_them(
        self, fleet: Fleet
    ) -> None:
        """Widened permissions and an extra topic permission are drift; a second apply
        puts them back, and the next plan is empty."""
        # Given
        on = ["--file", str(fleet.path), "--url", fleet.broker.amqp_url]
        on += ["--management-url", fleet.broker.management_url]
        first = fleet_cli("topology", "apply", *on, "--passwords-file", str(fleet.passwords_file))
        assert first.exit_code == EXIT_OK, first.output
        echo = fleet.user("echo")
        fleet.api(
            "PUT",
            f"/api/permissions/{fleet.vhost}/{echo}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        )
        fleet.api(
            "PUT",
            f"/api/topic-permissions/{fleet.vhost}/{echo}",
            json={"exchange": "payments", "write": ".*", "read": ".*"},
        )
        # When
        planned = fleet_cli("topology", "plan", *on)
        repaired = fleet_cli("topology", "apply", *on)
        after = fleet_cli("topology", "plan", *on)
        # Then
        assert planned.exit_code == EXIT_PENDING, planned.output
        assert planned.output.splitlines() == [
            f"! user {echo} (worker echo)",
            "    configure: .* → ''",
            r"    write: .* → ^(echo\.failures|inventory)$",
            "    read: .* → ^echo$",
            "    topic permission on exchange payments: write .*, read .* → (none)",
            "Plan: 1 drifted.",
        ]
        assert repaired.exit_code == EXIT_OK, repaired.output
        assert after.exit_code == EXIT_OK, after.output
        assert fleet.api("GET", f"/api/topic-permissions/{fleet.vhost}/{echo}") == [
            {
                "user": echo,
                "vhost": fleet.broker.vhost,
                "exchange": "inventory",
                "write": r"^stock\.rejected$",
                "read": "",
            }
        ]

    def test_a_new_user_without_a_password_is_refused_before_anything_changes(
        self, fleet: Fleet
    ) -> None:
        """One line naming the variables to set; exit 2; not even the exchanges exist."""
        # Given
        on = ["--file", str(fleet.path), "--url", fleet.broker.amqp_url]
        on += ["--management-url", fleet.broker.management_url]
        # When
        result = fleet_cli("topology", "apply", *on)
        # Then
        assert result.exit_code == EXIT_USAGE
        variables = ", ".join(
            f"FLEET_PASSWORD_{fleet.user(p).upper().replace('-', '_')}"
            for p in ("echo", "ingress", "ledger")
        )
        assert result.output == (
            f"error: users '{fleet.user('echo')}', '{fleet.user('ingress')}', "
            f"'{fleet.user('ledger')}' have no password: set {variables} or list them in "
            "--passwords-file (nothing was changed)\n"
        )
        exchanges = {e["name"] for e in fleet.api("GET", f"/api/exchanges/{fleet.vhost}")}
        assert "orders" not in exchanges

    async def test_a_user_the_file_dropped_loses_its_permissions_on_the_vhost(
        self, fleet: Fleet
    ) -> None:
        """Its permissions and topic permissions are revoked; the user itself stays."""
        # Given
        await fleet.apply()
        fleet.path.write_text(
            TOPOLOGY.format(prefix=fleet.prefix).replace(
                "  echo: {module: tests.fixtures.echo_worker, queue: echo, "
                "publish_to: inventory}\n",
                "",
            )
        )
        fleet.topology = load(fleet.path)
        # When
        await fleet.apply()
        # Then
        echo = fleet.user("echo")
        assert fleet.api("GET", f"/api/users/{echo}/permissions") == []
        assert fleet.api("GET", f"/api/users/{echo}/topic-permissions") == []
        assert fleet.api("GET", f"/api/users/{echo}")["name"] == echo
        assert fleet.api("GET", f"/api/users/{fleet.user('ledger')}/permissions") != []

    async def test_apply_through_the_api_refuses_without_passwords_too(self, fleet: Fleet) -> None:
        """MissingPassword, and the broker is left as it was."""
        # Given
        wiring = {n: load_worker(n, s).wiring() for n, s in fleet.topology.workers.items()}
        # When
        with pytest.raises(MissingPassword, match="have no password"):
            await apply(
                fleet.topology,
                fleet.broker.amqp_url,
                management_url=fleet.broker.management_url,
                wiring=wiring,
                passwords={},
            )
        # Then
        users = {u["name"] for u in fleet.api("GET", "/api/users")}
        assert not any(u.startswith(fleet.prefix) for u in users)


class TestRefusals:
    """What a process does not do, its user may not do: RabbitMQ answers 403."""

    async def test_a_worker_may_not_publish_to_another_services_exchange(
        self, fleet: Fleet
    ) -> None:
        """echo writes inventory; payments is another service's."""
        # Given
        await fleet.apply()
        # When
        text = await refusal(fleet.url("echo"), publish("payments", "payment.captured"))
        # Then
        assert_refused(text, fleet, "echo", "write", "exchange 'payments'")

    async def test_a_worker_may_not_publish_a_routing_key_its_handlers_do_not_emit(
        self, fleet: Fleet
    ) -> None:
        """echo emits StockRejected (stock.rejected) only; stock.reserved is refused."""
        # Given
        await fleet.apply()
        # When
        text = await refusal(fleet.url("echo"), publish("inventory", "stock.reserved"))
        # Then
        assert_refused(
            text, fleet, "echo", "write", "topic 'stock.reserved' in exchange 'inventory'"
        )
        confirm = await allowed(fleet.url("echo"), publish("inventory", "stock.rejected"))
        assert isinstance(confirm, Basic.Ack)

    async def test_a_worker_may_not_read_another_workers_queue(self, fleet: Fleet) -> None:
        """echo consumes echo; consuming ledger is refused."""
        # Given
        await fleet.apply()
        # When
        text = await refusal(
            fleet.url("echo"), lambda channel: channel.basic_consume("ledger", lambda m: None)
        )
        # Then
        assert_refused(text, fleet, "echo", "read", "queue 'ledger'")

    async def test_no_process_may_publish_through_the_default_exchange(self, fleet: Fleet) -> None:
        """It routes to any queue by name, so no user writes amq.default; failure copies
        go to <queue>.failures instead."""
        # Given
        await fleet.apply()
        # When
        text = await refusal(fleet.url("echo"), publish("", "ledger"))
        # Then
        assert_refused(text, fleet, "echo", "write", "exchange 'amq.default'")

    async def test_the_ingress_binds_its_answer_queue_to_the_answers_keys_only(
        self, fleet: Fleet
    ) -> None:
        """A server-named queue, bound to stock.rejected on inventory; another key, or a
        queue with a name of its own, is refused."""
        # Given
        await fleet.apply()

        async def answer_queue(channel: aiormq.abc.AbstractChannel, key: str) -> Any:
            declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
            await channel.queue_bind(declared.queue, "inventory", routing_key=key)
            return await channel.basic_consume(declared.queue, lambda m: None, no_ack=True)

        # When
        consuming = await allowed(fleet.url("ingress"), lambda c: answer_queue(c, "stock.rejected"))
        other_key = await refusal(fleet.url("ingress"), lambda c: answer_queue(c, "stock.reserved"))
        named = await refusal(fleet.url("ingress"), lambda c: c.queue_declare("mine"))
        placed = await allowed(fleet.url("ingress"), publish("orders", "order.placed"))
        # Then
        assert isinstance(consuming, Basic.ConsumeOk)
        assert isinstance(placed, Basic.Ack)
        assert_refused(
            other_key, fleet, "ingress", "read", "topic 'stock.reserved' in exchange 'inventory'"
        )
        assert_refused(named, fleet, "ingress", "configure", "queue 'mine'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TestAFleetUnderItsUsers:
    """Real `fleet worker run` processes, each connected as its own user."""

    async def test_a_worker_processes_retries_and_parks_as_its_own_user(
        self, fleet: Fleet, pika_publisher: PikaPublisher
    ) -> None:
        """Answers go out, a failing message goes through the 1 s delay tier and is parked;
        without the management tag the lag metrics lose only the unacked counts."""
        # Given a worker whose URL names its user, the password in FLEET_PASSWORD_<USER>
        await fleet.apply()
        user = fleet.user("echo")
        variable = "FLEET_PASSWORD_" + user.upper().replace("-", "_")
        url = fleet.broker.amqp_url.replace("guest:guest@", f"{user}@")
        worker = WorkerProcess(
            "echo",
            topology_file=fleet.path,
            url=url,
            pythonpath=[ROOT],
            # The test broker's API, with the worker's own credentials (from its URL).
            args=[
                "--metrics-port",
                str(free_port()),
                "--management-url",
                fleet.broker.management_base,
            ],
            env={variable: fleet.passwords[user]},
        )
        # When
        with worker:
            pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="ok-1")
            pika_publisher.publish(
                "orders", "order.placed", order("o-2", customer_id="boom"), message_id="boom-1"
            )
            [answer] = await collect(fleet.broker.amqp_url, "answers", 1, seconds=20)
            [parked] = await collect(fleet.broker.amqp_url, "echo.dead", 1, seconds=20)
        # Then
        assert answer.json()["order_id"] == "o-1"
        assert parked.message_id == "boom-1"
        assert parked.headers[h.REASON] == "retries-exhausted"
        assert parked.headers[h.RETRIES] == 1
        assert len(worker.events("message.retried")) == 1
        assert worker.events("access.not_own_user") == []
        [unavailable] = worker.events("lag.unacked_unavailable")
        assert f"refused user '{user}' (401)" in unavailable["error"]
        assert worker.events("lag.poll_failed") == []

    async def test_a_wrong_password_stops_the_worker_with_one_line(self, fleet: Fleet) -> None:
        """Trying again would not help: exit 1, saying which user was refused."""
        # Given
        await fleet.apply()
        url = with_credentials(fleet.broker.amqp_url, fleet.user("echo"), "not-it")
        worker = WorkerProcess("echo", topology_file=fleet.path, url=url, pythonpath=[ROOT])
        # When
        with pytest.raises(RuntimeError, match="refused the login"):
            worker.start(timeout=20)
        # Then
        assert worker.stop() == 1
        [line] = [o for o in worker.output if o.startswith("error:")]
        assert line.startswith(f"error: RabbitMQ at {url.replace(':not-it@', ':***@')} ")
        assert f"refused the login of user '{fleet.user('echo')}'" in line
        assert "not-it" not in "\n".join(worker.output)

    async def test_a_worker_connected_as_another_user_says_so(
        self, fleet: Fleet, pika_publisher: PikaPublisher
    ) -> None:
        """The operator's user works, with a warning that it has more rights than needed."""
        # Given
        await fleet.apply()
        # When
        with WorkerProcess(
            "echo", topology_file=fleet.path, url=fleet.broker.amqp_url, pythonpath=[ROOT]
        ) as worker:
            pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="ok-1")
            await collect(fleet.broker.amqp_url, "answers", 1, seconds=20)
        # Then
        [warning] = worker.events("access.not_own_user")
        assert (warning["user"], warning["own_user"]) == ("guest", fleet.user("echo"))

    async def test_the_ingress_and_a_worker_answer_a_synchronous_route_as_their_own_users(
        self, fleet: Fleet
    ) -> None:
        """POST /orders publishes as the ingress's user; the worker's answer reaches the
        ingress's server-named answer queue, bound under its topic permission."""
        # Given
        await fleet.apply()
        routes = resolve_routes(fleet.topology, default_registry)
        app, link = assemble(routes, fleet.url("ingress"), max_backoff=0.2)
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        server = TestServer(app)
        await server.start_server()
        try:
            await asyncio.wait_for(link.connected.wait(), 10)
            async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10) as http:
                with WorkerProcess(
                    "echo", topology_file=fleet.path, url=fleet.url("echo"), pythonpath=[ROOT]
                ) as worker:
                    # When
                    response = await http.post("/orders", json=order("o-sync"))
        finally:
            await server.close()
            stop.set()
            await keeper
        # Then
        assert response.status_code == 200, response.text
        assert response.headers["X-Fleet-Event-Type"] == "StockRejected"
        assert response.json()["reason"] == f"pid={worker.pid}"
