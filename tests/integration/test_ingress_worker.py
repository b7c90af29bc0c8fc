"""The ingress in front of a real worker process: a post is handled end to end, a
synchronous route answers with the worker's follow-on event, and a bounded load
run loses nothing (every 202 is an event in the queue)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import fulfilment.contracts  # noqa: F401  (registers OrderPlaced and StockRejected)
import httpx
import pytest
from aiohttp.test_utils import TestServer

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import ROOT, order
from tests.integration.test_cli_ingress import free_port
from topology import load
from topology.apply import apply
from workers.ingress.routes import resolve_routes
from workers.ingress.serve import assemble
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect, eventually, queue_depth

FLEET = [sys.executable, "-m", "workers.cli"]
TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges:
  orders: {}
  inventory: {}
queues:
  echo:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
  answers:
    type: classic
    bind: [{exchange: inventory, routing_key: "#"}]
workers:
  echo:
    module: tests.fixtures.echo_worker
    queue: echo
    publish_to: inventory
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
    /quote:
      contract: OrderPlaced
      exchange: orders
      reply: {events: [StockRejected], exchange: inventory, timeout: 500ms}
"""


@pytest.fixture
async def fleet_file(tmp_path: Path, broker: Broker) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(TOPOLOGY)
    await apply(load(path), broker.amqp_url, management_url=broker.management_url)
    return path


@pytest.fixture
async def http(fleet_file: Path, broker: Broker) -> AsyncIterator[httpx.AsyncClient]:
    """The ingress in this process (its answer queue bound), and a client for it."""
    routes = resolve_routes(load(fleet_file), default_registry)
    app, link = assemble(routes, broker.amqp_url, max_backoff=0.2)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    server = TestServer(app)
    await server.start_server()
    await asyncio.wait_for(link.connected.wait(), 10)
    async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=10) as client:
        yield client
    await server.close()
    stop.set()
    await keeper


def echo_worker(broker: Broker, path: Path, **env: str) -> WorkerProcess:
    return WorkerProcess(
        "echo", topology_file=path, url=broker.amqp_url, pythonpath=[ROOT], env=env
    )


async def test_a_post_is_processed_by_a_worker(
    http: httpx.AsyncClient, broker: Broker, fleet_file: Path
) -> None:
    """HTTP post → confirmed event → handler → follow-on in the same saga."""
    with echo_worker(broker, fleet_file):
        response = await http.post(
            "/orders", json=order("o-web"), headers={"Idempotency-Key": "web-1"}
        )
        assert response.status_code == 202, response.text
        [answer] = await collect(broker.amqp_url, "answers", 1)
    assert answer.type == "StockRejected"
    assert answer.json()["order_id"] == "o-web"
    assert answer.json()["sku"] == "web-1"  # the handler's ctx.message_id
    assert answer.correlation_id == "web-1"
    assert answer.headers[h.CAUSATION_ID] == "web-1"


async def test_a_synchronous_route_answers_with_the_follow_on_event(
    http: httpx.AsyncClient, broker: Broker, fleet_file: Path
) -> None:
    with echo_worker(broker, fleet_file) as worker:
        response = await http.post("/quote", json=order("o-sync"))
    assert response.status_code == 200, response.text
    assert response.headers["X-Fleet-Event-Type"] == "StockRejected"
    assert response.json()["order_id"] == "o-sync"
    assert response.json()["reason"] == f"pid={worker.pid}"


async def test_a_synchronous_route_times_out_with_504_but_keeps_the_event(
    http: httpx.AsyncClient, broker: Broker, fleet_file: Path
) -> None:
    """No worker answers in time: 504 naming the accepted message; it is processed later."""
    response = await http.post(
        "/quote", json=order("o-late"), headers={"Idempotency-Key": "late-1"}
    )
    assert response.status_code == 504
    assert response.json()["message_id"] == "late-1"
    assert "accepted" in response.json()["error"]
    with echo_worker(broker, fleet_file):
        [answer] = await collect(broker.amqp_url, "answers", 1)
    assert answer.correlation_id == "late-1"


async def test_concurrent_requests_get_their_own_answers(
    http: httpx.AsyncClient, broker: Broker, fleet_file: Path
) -> None:
    with echo_worker(broker, fleet_file):
        responses = await asyncio.gather(
            *(http.post("/quote", json=order(f"o-{i}")) for i in range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.json()["order_id"] for r in responses] == [f"o-{i}" for i in range(20)]


async def load_run(base_url: str, seconds: float, connections: int) -> Counter[int]:
    """Post orders from `connections` keep-alive clients for `seconds`; count the statuses."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    body = order("o-load")

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            async with session.post(f"{base_url}/orders", json=body) as response:
                await response.read()
                statuses[response.status] += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(connections)))
    return statuses


async def start_ingress(
    broker: Broker, path: Path, *args: str
) -> tuple[str, asyncio.subprocess.Process]:
    """`fleet ingress run` as its own process, its log in a file (a full pipe would stall it)."""
    port = free_port()
    log = (path.parent / f"ingress-{port}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        *FLEET, "ingress", "run", "--port", str(port),
        "--file", str(path), "--url", broker.amqp_url, *args,
        cwd=ROOT,
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base_url) as probe:

        async def ready() -> bool:
            try:
                return (await probe.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await eventually(ready, what=f"the ingress ready (its log: {log.name})", timeout=20)
        except AssertionError:
            process.kill()
            raise
    return base_url, process


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(float(os.environ.get("FLEET_LOAD_SECONDS", "4")), id="short"),
        pytest.param(30.0, id="30s", marks=pytest.mark.slow),
    ],
)
async def test_a_load_run_loses_nothing(broker: Broker, fleet_file: Path, seconds: float) -> None:
    """Every 202 is one event in the queue; nothing else was answered."""
    base_url, process = await start_ingress(broker, fleet_file)
    try:
        statuses = await load_run(base_url, seconds, connections=32)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    queued = await queue_depth(broker.amqp_url, "echo")
    accepted = statuses[202]
    print(
        f"\n[ingress-load] seconds={seconds:g} connections=32 accepted={accepted} "
        f"queued={queued} other={dict(statuses - Counter({202: accepted}))} "
        f"rate={accepted / seconds:.0f}/s"
    )
    assert accepted > 0
    assert set(statuses) == {202}
    assert queued == accepted


async def test_two_replicas_sharing_a_database_publish_a_repeated_id_once(
    broker: Broker, fleet_file: Path, database: str
) -> None:
    """A provider's retry that lands on the other ingress replica is still a duplicate."""
    replicas = [await start_ingress(broker, fleet_file, "--database-url", database) for _ in "ab"]
    try:
        headers = {"Idempotency-Key": "order-o-twice"}
        answers = []
        for base_url, _ in replicas:
            async with httpx.AsyncClient(base_url=base_url) as http:
                answers.append(await http.post("/orders", json=order("o-2x"), headers=headers))
    finally:
        for _, process in replicas:
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
    assert [a.status_code for a in answers] == [202, 200]
    assert answers[1].json() == {"message_id": "order-o-twice", "duplicate": True}
    assert await queue_depth(broker.amqp_url, "echo") == 1
