"""Failing over between broker nodes, without a cluster: a proxy in front of the
test broker is the node that dies, the broker itself the node that survives.

The chaos tests on a real 3-node cluster are in test_cluster_chaos.py (slow).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import fulfilment.contracts  # noqa: F401  (registers OrderPlaced for the ingress routes)
import httpx
import pytest
from aiohttp.test_utils import TestServer
from click.testing import CliRunner, Result
from fulfilment import TOPOLOGY_FILE

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from tests.integration.proxy import NodeProxy
from topology import BrokerUnreachable, loads
from topology.apply import apply
from workers.cli import cli
from workers.ingress.app import make_app
from workers.ingress.routes import resolve_routes
from workers.runtime.connection import connect
from workers.runtime.link import BrokerDown, BrokerLink
from workers.runtime.outgoing import Outgoing
from workers.testing import WorkerProcess, collect, queue_depth

#: The reference fleet's topology: its contracts are what `fleet publish` knows.
REFERENCE = ("--file", str(TOPOLOGY_FILE))

#: Nothing listens here: a node that is down.
DEAD_NODE = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
def proxy(broker: Broker) -> Iterator[NodeProxy]:
    with NodeProxy(broker.amqp_url) as node:
        yield node


def host_port(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def message(i: int, exchange: str = "orders") -> Outgoing:
    return Outgoing(
        exchange=exchange,
        routing_key="order.placed",
        body=b'{"n": %d}' % i,
        message_id=f"m-{i}",
        correlation_id=f"m-{i}",
        causation_id=None,
        type="OrderPlaced",
        version=1,
        mandatory=True,
        timestamp=datetime.now(UTC),
    )


class TestConnect:
    async def test_a_node_that_is_down_is_passed_over(self, broker: Broker) -> None:
        """The first node refuses; the connection opens on the second."""
        connection = await connect(f"{DEAD_NODE},{broker.amqp_url}", name="test")
        await connection.close()

    async def test_no_node_up_names_every_node_tried(self) -> None:
        """One line that lists each node with its reason."""
        with pytest.raises(BrokerUnreachable, match="cannot reach any RabbitMQ node") as raised:
            await connect(f"{DEAD_NODE},amqp://guest:guest@127.0.0.1:2/", name="test")
        assert "127.0.0.1:1/" in str(raised.value)
        assert "127.0.0.1:2/" in str(raised.value)


class TestWorkerFailover:
    async def test_a_worker_whose_node_dies_resumes_on_another(
        self, broker: Broker, echo_topology, proxy: NodeProxy, pika_publisher: PikaPublisher
    ) -> None:
        """Consuming through the proxy, the worker moves to the broker when the proxy dies."""
        # Given a worker connected through the first node (the proxy)
        path, _ = await echo_topology(queue_type="quorum")
        nodes = f"{proxy.url},{broker.amqp_url}"
        with WorkerProcess("echo", topology_file=path, url=nodes, pythonpath=[ROOT]) as worker:
            pika_publisher.publish("orders", "order.placed", order("before"), message_id="m-1")
            assert len(await collect(broker.amqp_url, "answers", 1)) == 1
            assert worker.events("worker.consuming")[0]["node"] == host_port(proxy.url)
            # When that node dies
            proxy.cut()
            pika_publisher.publish("orders", "order.placed", order("after"), message_id="m-2")
            # Then the worker consumes again, on the other node, without operator action
            # (the first answer may come again: its ack may have died with the node)
            answered = []
            while "after" not in answered:
                more = await collect(broker.amqp_url, "answers", 1, seconds=30)
                assert more, f"no answer to 'after' (answers: {answered})"
                answered += [m.json()["order_id"] for m in more]
            [failover] = worker.events("broker.failover")
        assert set(answered) <= {"before", "after"}
        assert failover["node"] == host_port(broker.amqp_url)
        assert failover["seconds"] >= 0


class TestPublisherFailover:
    async def test_publishes_in_flight_when_the_node_dies_are_sent_again_elsewhere(
        self, broker: Broker, echo_topology, proxy: NodeProxy
    ) -> None:
        """Every publish returns confirmed; the unconfirmed ones went again via the broker."""
        # Given a link publishing through the proxy, many confirms outstanding
        await echo_topology(queue_type="quorum")
        link = BrokerLink(f"{proxy.url},{broker.amqp_url}", name="test", max_backoff=0.2)
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        await asyncio.wait_for(link.connected.wait(), 10)
        total = 2000
        confirmed = 0
        a_quarter = asyncio.Event()

        async def publish(i: int) -> None:
            nonlocal confirmed
            await link.publish(message(i))
            confirmed += 1
            if confirmed == total // 4:
                a_quarter.set()

        # When the proxy dies while they are in flight
        publishing = asyncio.gather(*(publish(i) for i in range(total)))
        await a_quarter.wait()
        proxy.cut()
        await publishing
        stop.set()
        await keeper
        # Then each one was confirmed: none is missing from the queue, and the only
        # extra copies are of publishes sent again
        depth = await queue_depth(broker.amqp_url, "echo")
        received = await collect(broker.amqp_url, "echo", depth)
        assert {m.message_id for m in received} == {f"m-{i}" for i in range(total)}
        assert total <= len(received) <= total + link.resent
        assert link.resent > 0
        assert len(link.failovers) == 1

    async def test_with_no_node_reachable_a_publish_is_refused_at_once(self) -> None:
        """Reported as BrokerDown (the ingress answers 503), never dropped silently."""
        link = BrokerLink(f"{DEAD_NODE},amqp://guest:guest@127.0.0.1:2/", name="test")
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        try:
            with pytest.raises(BrokerDown, match="unreachable"):
                await link.publish(message(1))
        finally:
            stop.set()
            await keeper


class TestCommandLine:
    async def test_fleet_publish_uses_the_first_node_that_answers(
        self, broker: Broker, echo_topology
    ) -> None:
        """A node that is down in FLEET_AMQP_URL's list costs nothing but a refused connect."""
        # Given a topology applied, and a list whose first node is down
        await echo_topology()
        body = json.dumps(order("o-1"))
        # When publishing through the list
        result = await fleet(
            *(
                "publish",
                "orders",
                "order.placed",
                "--type",
                "OrderPlaced",
                "--file",
                str(TOPOLOGY_FILE),
            ),
            *("--json", body, "--message-id", "m-cli"),
            env={"FLEET_AMQP_URL": f"{DEAD_NODE},{broker.amqp_url}"},
        )
        # Then it is confirmed, and it arrived
        assert result.exit_code == 0, result.output
        [received] = await collect(broker.amqp_url, "echo", 1)
        assert received.message_id == "m-cli"

    async def test_fleet_publish_with_no_node_up_fails_and_says_how_to_resend(self) -> None:
        """Not confirmed is reported, with the message id to publish again."""
        result = await fleet(
            *(
                "publish",
                "orders",
                "order.placed",
                "--type",
                "OrderPlaced",
                "--file",
                str(TOPOLOGY_FILE),
                "--message-id",
                "m-9",
            ),
            *("--json", json.dumps(order("o-9")), "--url", DEAD_NODE),
        )
        assert result.exit_code == 1
        assert "publish it again with --message-id m-9" in result.output

    async def test_topology_apply_picks_a_node_that_is_up(self, broker: Broker, tmp_path) -> None:
        """Administrative commands talk to one node: the first that answers."""
        path = tmp_path / "topology.yaml"
        path.write_text("exchanges: {orders: {}}\n")
        result = await fleet(
            *("topology", "apply", "--file", str(path)),
            *("--url", f"{DEAD_NODE},{broker.amqp_url}", "--management-url", broker.management_url),
        )
        assert result.exit_code == 0, result.output
        assert "orders" in {e["name"] for e in broker_exchanges(broker)}


async def fleet(*args: str, env: dict[str, str] | None = None) -> Result:
    """`fleet ARGS...` in a thread (it runs its own event loop), logs as JSON."""
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, ["--log-format", "json", *args], env=env)


def broker_exchanges(broker: Broker) -> list[dict[str, str]]:
    with broker.api() as api:
        response = api.get(f"/api/exchanges/{quote(broker.vhost, safe='')}")
        response.raise_for_status()
        exchanges: list[dict[str, str]] = response.json()
        return exchanges


INGRESS_TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges: {orders: {}}
queues:
  seen:
    bind: [{exchange: orders, routing_key: order.placed}]
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
"""


class TestIngressFailover:
    async def test_the_ingress_answers_202_through_a_node_loss(
        self, broker: Broker, proxy: NodeProxy
    ) -> None:
        """503 is for "no node reachable"; losing one node of two is not that."""
        # Given the ingress publishing through the proxy, the broker as its second node
        topology = loads(INGRESS_TOPOLOGY)
        await apply(topology, broker.amqp_url, management_url=broker.management_url)
        link = BrokerLink(f"{proxy.url},{broker.amqp_url}", max_backoff=0.2)
        stop = asyncio.Event()
        keeper = asyncio.create_task(link.run(stop))
        server = TestServer(make_app(resolve_routes(topology, default_registry, {}), link))
        await server.start_server()
        try:
            async with httpx.AsyncClient(base_url=str(server.make_url("")), timeout=30) as http:
                await asyncio.wait_for(link.connected.wait(), 10)
                before = await http.post("/orders", json=order("o-1"))
                # When the node it uses dies
                proxy.cut()
                after = await http.post("/orders", json=order("o-2"))
        finally:
            await server.close()
            stop.set()
            await keeper
        # Then both posts were accepted, and both orders arrived
        assert (before.status_code, after.status_code) == (202, 202)
        received = await collect(broker.amqp_url, "seen", 2)
        assert sorted(m.json()["order_id"] for m in received) == ["o-1", "o-2"]
