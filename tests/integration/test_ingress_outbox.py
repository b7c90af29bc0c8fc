"""The ingress accepting into the outbox (`accept: outbox`), against the real
PostgreSQL and RabbitMQ: a 202 means the event and the request's id committed
together; the relay publishes the event, even when the broker was down at the
time of the request; a repeat is caught by any replica, from the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import fulfilment.contracts  # noqa: F401  (registers OrderPlaced)
import httpx
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import order
from tests.integration.test_outbox import relaying
from topology import loads
from topology.apply import apply
from workers.cli import cli
from workers.ingress.auth import sign_standard_webhooks
from workers.ingress.intake import OutboxIntake
from workers.ingress.routes import resolve_routes
from workers.ingress.serve import assemble
from workers.runtime import headers as h
from workers.testing import Tap, tap

TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges:
  orders: {}
queues:
  seen:
    type: quorum
    bind: [{exchange: orders, routing_key: order.placed}]
outbox:
  publishes: {orders: [OrderPlaced]}
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders, accept: outbox}
    /hooks:
      contract: OrderPlaced
      exchange: orders
      accept: outbox
      auth: {type: standard-webhooks, secrets_env: [HOOK_SECRET]}
"""
ENV = {"HOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
#: Nothing listens here: an ingress whose broker is down.
DEAD_BROKER = "amqp://guest:guest@127.0.0.1:1/"


@dataclass
class Replica:
    http: httpx.AsyncClient
    intake: OutboxIntake


@contextlib.asynccontextmanager
async def replica(database: str, amqp_url: str) -> AsyncIterator[Replica]:
    """One ingress process's app on a free port, its broker link running."""
    routes = resolve_routes(loads(TOPOLOGY), default_registry, ENV)
    intake = OutboxIntake(database, ["orders"])
    await intake.start()
    app, link = assemble(routes, amqp_url, max_backoff=0.2, intake=intake)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    server = TestServer(app)
    await server.start_server()
    http = httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10)
    try:
        yield Replica(http, intake)
    finally:
        await http.aclose()
        await server.close()
        stop.set()
        await keeper
        await intake.close()


@pytest.fixture
async def applied(broker: Broker) -> str:
    await apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url)
    return broker.amqp_url


async def rows(database: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database)
    try:
        return await connection.fetch(
            "SELECT id, message_id, correlation_id, exchange, routing_key, type, app_id, "
            "NULL::timestamptz AS sent_at FROM fleet_outbox UNION ALL "
            "SELECT id, message_id, correlation_id, exchange, routing_key, type, app_id, sent_at "
            "FROM fleet_outbox_sent ORDER BY id"
        )
    finally:
        await connection.close()


async def post(client: httpx.AsyncClient, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/orders", content=json.dumps(body), headers=headers)


async def arrived(seen: Tap, count: int) -> list[str]:
    """The message ids of the first `count` messages the tap sees."""
    return [(await seen.next_message(timeout=15)).message_id or "" for _ in range(count)]


class TestAccepted:
    async def test_a_202_means_committed_and_the_relay_publishes_it(
        self, broker: Broker, applied: str, database: str
    ) -> None:
        async with (
            replica(database, applied) as ingress,
            tap(applied, "orders") as seen,
            relaying(database, applied),
        ):
            answer = await ingress.http.post(
                "/orders",
                content=json.dumps(order("o-1")),
                headers={"Content-Type": "application/json", "X-Correlation-Id": "saga-1"},
            )
            assert answer.status_code == 202, answer.text
            message_id = answer.json()["message_id"]
            recorded = await rows(database)
            assert [(r["message_id"], r["correlation_id"]) for r in recorded] == [
                (message_id, "saga-1")
            ]
            assert recorded[0]["app_id"] == "fleet.ingress"
            message = await seen.next_message(timeout=10)
        assert message.message_id == message_id
        assert message.correlation_id == "saga-1"
        assert message.type == "OrderPlaced"
        assert message.headers[h.VERSION] == 1
        assert message.json()["order_id"] == "o-1"
        assert (await rows(database))[0]["sent_at"] is not None

    async def test_accepted_while_the_broker_is_down_then_published(
        self, broker: Broker, applied: str, database: str
    ) -> None:
        """The ingress's own broker link is down: it still answers 202 (and is ready,
        having no route that publishes itself); the relay delivers once it runs."""
        async with replica(database, DEAD_BROKER) as ingress:
            answers = await asyncio.gather(
                *(post(ingress.http, order(f"o-{i}")) for i in range(20))
            )
            assert [a.status_code for a in answers] == [202] * 20
            ready = await ingress.http.get("/readyz")
            assert ready.status_code == 200, ready.text
        assert len(await rows(database)) == 20
        async with tap(applied, "orders") as seen, relaying(database, applied):
            received = await arrived(seen, 20)
        assert sorted(received) == sorted(a.json()["message_id"] for a in answers)


class TestRepeats:
    async def test_a_repeat_is_caught_by_another_replica_from_the_database(
        self, applied: str, database: str
    ) -> None:
        async with replica(database, applied) as first, replica(database, applied) as second:
            accepted = await post(first.http, order("o-1"), key="order-o-1")
            again = await post(second.http, order("o-1"), key="order-o-1")
            changed = await post(second.http, order("o-2"), key="order-o-1")
        assert accepted.status_code == 202, accepted.text
        assert again.status_code == 200
        assert again.json() == {"message_id": "order-o-1", "duplicate": True}
        assert changed.status_code == 422
        assert [r["message_id"] for r in await rows(database)] == ["order-o-1"]

    async def test_concurrent_repeats_commit_one_event(self, applied: str, database: str) -> None:
        async with replica(database, applied) as first, replica(database, applied) as second:
            answers = await asyncio.gather(
                *(
                    post(ingress.http, order("o-1"), key="order-o-1")
                    for _ in range(10)
                    for ingress in (first, second)
                )
            )
        codes = [a.status_code for a in answers]
        assert codes.count(202) == 1, codes
        assert set(codes) <= {202, 200, 409}, codes
        assert len(await rows(database)) == 1

    async def test_a_signed_webhook_replayed_is_stored_once(
        self, applied: str, database: str
    ) -> None:
        body = json.dumps(order("o-9")).encode()
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": sign_standard_webhooks(ENV["HOOK_SECRET"], "msg_1", now, body),
        }
        async with replica(database, applied) as ingress:
            first = await ingress.http.post("/hooks", content=body, headers=headers)
            replayed = await ingress.http.post(
                "/hooks", content=body, headers={**headers, "Idempotency-Key": "fresh"}
            )
        assert first.status_code == 202, first.text
        assert replayed.status_code == 200
        assert [r["message_id"] for r in await rows(database)] == ["msg_1"]


class TestRefusals:
    async def test_a_refused_request_leaves_no_row_and_no_id(
        self, applied: str, database: str
    ) -> None:
        async with replica(database, applied) as ingress:
            bad = await post(ingress.http, {"order_id": 1}, key="k-1")
            good = await post(ingress.http, order("o-1"), key="k-1")
        assert bad.status_code == 400
        assert good.status_code == 202  # the refused request did not take the id
        assert len(await rows(database)) == 1

    async def test_the_database_gone_answers_503_and_not_ready(
        self, applied: str, database: str
    ) -> None:
        async with replica(database, applied) as ingress:
            await ingress.intake.pool.close()
            answer = await post(ingress.http, order("o-1"))
            ready = await ingress.http.get("/readyz")
        assert answer.status_code == 503
        assert "outbox" in answer.json()["error"]
        assert ready.status_code == 503

    def test_the_cli_needs_the_outbox_database(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("FLEET_DATABASE_URL", raising=False)
        monkeypatch.setenv("HOOK_SECRET", ENV["HOOK_SECRET"])
        (tmp_path / "fleet.yaml").write_text(TOPOLOGY)
        result = CliRunner().invoke(cli, ["ingress", "run", "--file", str(tmp_path / "fleet.yaml")])
        assert result.exit_code == 2, result.output
        assert "need the outbox's database: set FLEET_DATABASE_URL" in result.output
