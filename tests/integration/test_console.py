"""`fleet console` against a real broker and database: browsing leaves queues as they
were, the failures page groups and acts, and every refusal of the access rules."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from tests.conftest import Broker
from tests.integration.conftest import PikaPublisher, order
from workers.cli import _register_commands, cli
from workers.console.app import Settings, make_app
from workers.console.browse import browse
from workers.console.security import Access
from workers.loader import import_contracts
from workers.runtime import headers as h
from workers.testing import collect, eventually, queue_depth

_register_commands()

TOKEN = "operator-token-0123456789"
READONLY = "readonly-token-0123456789"


def park(publisher: PikaPublisher, count: int, *, reason: str = "permanent",
         error_type: str = "CardExpired", start: int = 0, body: Any = None) -> None:  # fmt: skip
    """Messages parked in echo.dead as a worker parks them (its failure headers)."""
    for i in range(start, start + count):
        publisher.publish(
            "", "echo.dead", body if body is not None else order(f"o-{i}"),
            message_id=f"m-{i}",
            headers={"version": 1, h.REASON: reason, h.ERROR_TYPE: error_type, h.ATTEMPTS: 4,
                     h.ERROR_MESSAGE: f"{error_type} for o-{i}", h.WORKER: "echo",
                     h.LAST_FAILURE: "2026-01-01T00:00:00.000+00:00"},
        )  # fmt: skip


async def contents(url: str, queue: str) -> list[tuple[str | None, bytes]]:
    """Every message of `queue` (id, body) in order, read by consuming and re-publishing
    nothing: a browse of its own, independent of the console's cache."""
    connection = await aio_pika.connect(url)
    try:
        browsed = await browse(connection, queue, limit=100_000)
        return [(m.header.properties.message_id, m.body) for m in browsed.messages]
    finally:
        await connection.close()


@pytest.fixture
async def console(
    broker: Broker, echo_topology: Callable[..., Any], tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start a console on the echo topology: `await console(access=..., queue_type=...)`."""
    clients: list[TestClient[Any, Any]] = []

    async def start(
        access: Access | None = None, queue_type: str = "classic", database: str | None = None
    ) -> TestClient[Any, Any]:
        path, topology = await echo_topology(queue_type=queue_type)
        import_contracts(topology)
        settings = Settings(
            topology=topology, topology_file=str(path), amqp_url=broker.amqp_url,
            management_url=broker.management_url, database_url=database,
            audit_file=tmp_path / "audit.jsonl", access=access or Access(), max_age=60.0,
        )  # fmt: skip
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def csrf(page: str) -> str:
    found = re.search(r'name=csrf value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found[1]


def keys(page: str) -> list[str]:
    return re.findall(r'name=key value="([0-9a-f]{16})"', page)


async def confirmed(client: TestClient[Any, Any], path: str, form: dict[str, Any]) -> str:
    """POST an action, check it asks first and changes nothing yet, then confirm it."""
    first = await client.post(path, data=form)
    page = await first.text()
    assert first.status == 200, page
    assert 'id="dry-run"' in page
    assert 'id="confirm"' in page
    second = await client.post(path, data=[*_pairs(form), ("confirmed", "yes")])
    assert second.status == 200, await second.text()
    return await second.text()


def _pairs(form: dict[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for k, v in form.items():
        for item in v if isinstance(v, list) else [v]:
            pairs.append((k, item))
    return pairs


class TestBrowsing:
    @pytest.mark.parametrize("queue_type", ["classic", "quorum"])
    async def test_browsing_leaves_the_queue_s_contents_and_order_unchanged(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher,
        queue_type: str,
    ) -> None:  # fmt: skip
        """Reading the failures page twice consumes nothing and reorders nothing."""
        client = await console(queue_type=queue_type)
        park(pika_publisher, 120)
        before = await contents(broker.amqp_url, "echo.dead")
        for _ in range(2):
            response = await client.get("/failures?queue=echo.dead")
            assert response.status == 200
            assert "120</span> in echo.dead" in await response.text()
        assert await contents(broker.amqp_url, "echo.dead") == before
        assert [mid for mid, _ in before] == [f"m-{i}" for i in range(120)]


class TestFailuresPage:
    async def test_messages_are_grouped_by_reason_and_exception_and_filtered(
        self, console: Callable[..., Any], pika_publisher: PikaPublisher
    ) -> None:
        """Two kinds of failure make two groups; a body substring narrows them to one."""
        client = await console()
        park(pika_publisher, 3, error_type="CardExpired")
        park(pika_publisher, 2, reason="decode", error_type="InvalidPayload", start=10)
        page = await (await client.get("/failures")).text()
        assert "3</span> in echo.dead: permanent · CardExpired" in page
        assert "2</span> in echo.dead: decode · InvalidPayload" in page
        page = await (await client.get("/failures?q=o-11")).text()
        assert "1</span> in echo.dead: decode · InvalidPayload" in page
        assert "CardExpired" not in page.split("</form>", 1)[1]
        page = await (await client.get("/failures?type=CardExpired&range=15m")).text()
        assert "No dead-lettered messages match" in page  # they failed in January

    async def test_a_group_replay_is_confirmed_then_moves_every_message_and_is_audited(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        """Replaying a group sends its messages to the origin queue, attempts reset."""
        client = await console()
        park(pika_publisher, 3)
        park(pika_publisher, 1, reason="decode", error_type="InvalidPayload", start=10)
        page = await (await client.get("/failures?type=CardExpired")).text()
        group = re.search(r'name=group value="([0-9a-f]+)"', page)
        assert group
        form = {"csrf": csrf(page), "queue": "echo.dead", "group": group[1],
                "type": "CardExpired", "action": "replay-group"}  # fmt: skip
        done = await confirmed(client, "/failures/action", form)
        assert "Replayed 3 message(s) from echo.dead to echo." in done
        back = await collect(broker.amqp_url, "echo", 3, seconds=5)
        assert sorted(m.message_id or "" for m in back) == ["m-0", "m-1", "m-2"]
        assert all(h.REASON not in (m.headers or {}) for m in back)
        assert await queue_depth(broker.amqp_url, "echo.dead") == 1
        audit = await (await client.get("/audit")).text()
        assert "replay" in audit
        assert "local:" in audit

    async def test_a_selection_is_discarded_and_the_rest_keep_their_order(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        client = await console()
        park(pika_publisher, 5)
        page = await (await client.get("/failures")).text()
        chosen = keys(page)[1:3]  # m-1, m-2
        form = {"csrf": csrf(page), "queue": "echo.dead", "key": chosen,
                "action": "discard-selected"}  # fmt: skip
        done = await confirmed(client, "/failures/action", form)
        assert "Discarded 2 message(s)" in done
        left = await contents(broker.amqp_url, "echo.dead")
        assert [mid for mid, _ in left] == ["m-0", "m-3", "m-4"]

    async def test_an_edited_body_is_checked_against_its_contract_before_replay(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        """An edit that does not fit OrderPlaced is refused; one that fits is replayed."""
        client = await console()
        park(pika_publisher, 1, reason="decode", error_type="InvalidPayload",
             body={"order_id": "o-9"})  # fmt: skip
        page = await (await client.get("/failures")).text()
        [key] = keys(page)
        edit = await (await client.get(f"/failures/edit?queue=echo.dead&key={key}")).text()
        token = csrf(edit)
        refused = await client.post(
            "/failures/edit", data={"csrf": token, "queue": "echo.dead", "key": key,
                                    "body": '{"order_id": "o-9"}'},
        )  # fmt: skip
        assert refused.status == 400
        assert "not sent" in await refused.text()
        assert await queue_depth(broker.amqp_url, "echo") == 0
        fixed = json.dumps(order("o-9"))
        form = {"csrf": token, "queue": "echo.dead", "key": key, "body": fixed}
        done = await confirmed(client, "/failures/edit", form)
        assert "Replayed 1 edited message(s)" in done
        [back] = await collect(broker.amqp_url, "echo", 1, seconds=5)
        assert json.loads(back.body) == order("o-9")
        assert await queue_depth(broker.amqp_url, "echo.dead") == 0

    async def test_purge_asks_first_then_empties_the_queue(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        client = await console()
        park(pika_publisher, 4)
        page = await (await client.get("/failures?queue=echo.dead")).text()
        form = {"csrf": csrf(page), "queue": "echo.dead", "action": "purge"}
        done = await confirmed(client, "/failures/action", form)
        assert "Purged 4 message(s)" in done
        assert await queue_depth(broker.amqp_url, "echo.dead") == 0


class TestBrokerRestarts:
    async def test_a_closed_broker_connection_is_opened_again_by_the_next_request(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        """A broker restart (here: the broker closing the console's connection) is no
        500: the next page opens a new connection and reads the queue."""
        client = await console()
        park(pika_publisher, 3)
        assert "m-2" in await (await client.get("/failures?queue=echo.dead")).text()

        def console_connections() -> list[str]:
            with broker.api() as api:
                listed = api.get("/api/connections").json()
            return [
                c["name"] for c in listed
                if c.get("vhost") == broker.vhost
                and "fleet console" in (c.get("client_properties") or {}).get("connection_name", "")
            ]  # fmt: skip

        await eventually(console_connections, what="the console's connection listed")
        for name in console_connections():
            with broker.api() as api:
                api.delete(f"/api/connections/{name}").raise_for_status()
        app = client.server.app
        assert app is not None
        from workers.console.app import CONSOLE

        first = app[CONSOLE].connection
        assert first is not None
        await eventually(
            lambda: not first.connected.is_set(), what="the connection closed by the broker"
        )
        park(pika_publisher, 1, start=3)
        response = await client.get("/overview/table")
        assert response.status == 200, await response.text()
        app[CONSOLE].index.forget("echo.dead")  # type: ignore[union-attr]
        page = await (await client.get("/failures?queue=echo.dead")).text()
        assert "m-3" in page
        assert app[CONSOLE].connection is not first


class TestOtherPages:
    async def test_the_overview_shows_dead_letters_in_red(
        self, console: Callable[..., Any], pika_publisher: PikaPublisher
    ) -> None:
        client = await console()
        park(pika_publisher, 2)
        page = await (await client.get("/overview/table")).text()
        assert re.search(r'<tr class=dead><td>echo</td>.*data-dead="echo"[^>]*>2</a>', page)
        assert "<b>2</b> dead-lettered" in page

    async def test_the_topology_page_draws_the_graph_and_the_plan(
        self, console: Callable[..., Any]
    ) -> None:
        client = await console()
        page = await (await client.get("/topology")).text()
        assert "<svg" in page
        assert "echo worker" in page
        assert 'id="plan-summary"' in page


class TestAccess:
    def test_a_non_loopback_address_without_a_token_is_refused(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("FLEET_CONSOLE_TOKEN", raising=False)
        monkeypatch.delenv("FLEET_CONSOLE_READONLY_TOKEN", raising=False)
        result = CliRunner().invoke(cli, ["console", "--host", "0.0.0.0"])
        assert result.exit_code == 2
        assert "refusing to serve on '0.0.0.0' without a token" in result.output

    def test_a_short_token_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("FLEET_CONSOLE_TOKEN", "secret")
        result = CliRunner().invoke(cli, ["console", "--host", "0.0.0.0"])
        assert result.exit_code == 2
        assert "shorter than 16 characters" in result.output

    async def test_requests_without_a_good_token_are_refused(
        self, console: Callable[..., Any]
    ) -> None:
        client = await console(access=Access(TOKEN, READONLY))
        assert (await client.get("/overview/table")).status == 401
        wrong = {"Authorization": "Bearer not-the-token-at-all"}
        assert (await client.get("/failures", headers=wrong)).status == 401
        login = await client.get("/", headers={"Accept": "text/html"})
        assert login.status == 401
        assert "Sign in" in await login.text()
        assert (await client.post("/failures/action", data={"action": "purge"})).status == 401

    async def test_the_read_only_token_sees_everything_and_changes_nothing(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        client = await console(access=Access(TOKEN, READONLY))
        park(pika_publisher, 1)
        signed = await client.post("/login", data={"who": "rita", "token": READONLY},
                                   allow_redirects=False)  # fmt: skip
        assert signed.status == 303
        for path in ("/", "/failures", "/sagas", "/topology", "/audit"):
            assert (await client.get(path)).status == 200, path
        page = await (await client.get("/failures")).text()
        form = {"csrf": csrf(page), "queue": "echo.dead", "action": "purge", "confirmed": "yes"}
        refused = await client.post("/failures/action", data=form)
        assert refused.status == 403
        assert await queue_depth(broker.amqp_url, "echo.dead") == 1

    async def test_a_post_without_the_csrf_token_is_refused(
        self, console: Callable[..., Any], broker: Broker, pika_publisher: PikaPublisher
    ) -> None:
        client = await console(access=Access(TOKEN, READONLY))
        park(pika_publisher, 1)
        await client.post("/login", data={"who": "olga", "token": TOKEN})
        refused = await client.post(
            "/failures/action", data={"queue": "echo.dead", "action": "purge", "confirmed": "yes"}
        )
        assert refused.status == 403
        assert "CSRF" in await refused.text()
        assert await queue_depth(broker.amqp_url, "echo.dead") == 1

    async def test_an_open_console_refuses_a_host_that_is_not_the_loopback(
        self, console: Callable[..., Any]
    ) -> None:
        """No token: a page on another site rebinding its name to 127.0.0.1 gets nothing."""
        client = await console()
        assert (await client.get("/", headers={"Host": "evil.example:8090"})).status == 403
        assert (await client.get("/", headers={"Host": "127.0.0.1:8090"})).status == 200

    async def test_the_audit_table_refuses_updates_and_deletes(
        self, console: Callable[..., Any], database: str, pika_publisher: PikaPublisher
    ) -> None:
        """With a database the audit log is a table a trigger keeps append-only."""
        client = await console(database=database)
        park(pika_publisher, 1)
        page = await (await client.get("/failures?queue=echo.dead")).text()
        await confirmed(client, "/failures/action",
                        {"csrf": csrf(page), "queue": "echo.dead", "action": "purge"})  # fmt: skip
        db = await asyncpg.connect(database)
        try:
            assert await db.fetchval("SELECT count(*) FROM fleet_console_audit") == 1
            for sql in (
                "UPDATE fleet_console_audit SET who = 'x'",
                "DELETE FROM fleet_console_audit",
                "TRUNCATE fleet_console_audit",
            ):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await db.execute(sql)
        finally:
            await db.close()


class TestFleetUp:
    async def test_fleet_up_starts_the_console_on_the_loopback(
        self, broker: Broker, echo_topology: Callable[..., Any]
    ) -> None:
        """`fleet up` runs `fleet console` beside the workers, on 127.0.0.1."""
        path, _ = await echo_topology()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers.cli", "up", "--only", "console", "--no-apply",
            "--console-port", str(port), "--file", str(path), "--url", broker.amqp_url,
            "--management-url", broker.management_url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:

            async def serving() -> bool:
                try:
                    async with aiohttp.ClientSession() as session:
                        response = await session.get(f"http://127.0.0.1:{port}/overview/table")
                        return response.status == 200 and "echo" in await response.text()
                except aiohttp.ClientError:
                    return False

            await eventually(serving, what="the console under fleet up", timeout=30)
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)
