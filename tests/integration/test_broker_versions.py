"""What RabbitMQ 3.10 and 4.x treat differently, on whichever broker the suite runs
against (`make test` runs this file on the machine's 3.10 and on the 4.0 node).

Differences found elsewhere are tested where they live: a quorum queue's crash
loop past its delivery limit in test_worker_process.py, the dead-letter headers
of 4.x in tests/unit/test_dlq.py, the settings `topology check` warns about in
tests/unit/test_topology_versions.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher, order
from topology import UnsafeChange, expand, loads
from topology.apply import apply, survey
from topology.names import RECORD_QUEUE
from workers.testing import WorkerProcess, collect, eventually

LOCATED = """
exchanges:
  orders: {}
queues:
  audit:
    type: classic
    arguments: {x-queue-leader-locator: balanced}
    bind: [{exchange: orders, routing_key: "order.#"}]
"""

MIXED = """
exchanges:
  orders: {}
queues:
  payments:
    bind: [{exchange: orders, routing_key: order.placed}]
    retry: {delays: [5s]}
  audit:
    type: classic
    bind: [{exchange: orders, routing_key: "order.#"}]
"""


def api_get(broker: Broker, path: str) -> Any:
    with broker.api() as api:
        response = api.get(path)
        response.raise_for_status()
        return response.json()


def queue_types(broker: Broker) -> dict[str, str]:
    queues = api_get(broker, f"/api/queues/{quote(broker.vhost, safe='')}")
    return {q["name"]: q["type"] for q in queues}


class TestQueueArguments:
    async def test_a_classic_queue_takes_a_leader_locator_from_4_0_and_3_x_refuses_it(
        self, broker: Broker, broker_version: tuple[int, ...]
    ) -> None:
        """`x-queue-leader-locator` replaces 4.0's deprecated `x-queue-master-locator`; on a
        classic queue RabbitMQ 3.x refuses it, and apply names the queue and the reason
        (`topology check` warns about both settings)."""
        # Given
        topology = loads(LOCATED)
        # When / Then
        if broker_version < (4, 0):
            with pytest.raises(UnsafeChange, match=r"^queue 'audit'.*x-queue-leader-locator"):
                await apply(topology, broker.amqp_url, management_url=broker.management_url)
            return
        await apply(topology, broker.amqp_url, management_url=broker.management_url)
        audit = broker.queue("audit")
        assert audit["type"] == "classic"
        assert audit["arguments"]["x-queue-leader-locator"] == "balanced"


class TestDefaultQueueType:
    async def test_apply_declares_the_files_types_on_a_vhost_whose_default_is_quorum(
        self, broker: Broker
    ) -> None:
        """A vhost's default queue type (a 4.x habit: `default_queue_type` quorum) changes
        nothing: every queue fleet declares, its record included, names its type, and a
        plan after apply finds nothing to do (4.x reports x-queue-type among the
        arguments of every queue; the plan reads the type from its own field)."""
        # Given the test's vhost made again with quorum as its default queue type
        vhost = quote(broker.vhost, safe="")
        with broker.api() as api:
            api.delete(f"/api/vhosts/{vhost}").raise_for_status()
            api.put(
                f"/api/vhosts/{vhost}",
                # 3.10 reads `defaultqueuetype` (when the vhost is made), 3.12 and later
                # `default_queue_type`.
                json={"default_queue_type": "quorum", "defaultqueuetype": "quorum"},
            ).raise_for_status()
            api.put(
                f"/api/permissions/{vhost}/guest",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
        connection = await aio_pika.connect(broker.amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("untyped", durable=True)
        assert queue_types(broker) == {"untyped": "quorum"}
        topology = loads(MIXED)
        # When
        await apply(topology, broker.amqp_url, management_url=broker.management_url)
        # Then
        types = queue_types(broker)
        assert types["audit"] == "classic"
        assert types[RECORD_QUEUE] == "classic"
        assert types["payments"] == types["payments.dead"] == "quorum"
        plan, _ = survey(expand(topology), broker.amqp_url, management_url=broker.management_url)
        assert plan.pending == []


class TestDeprecatedFeatures:
    @pytest.mark.parametrize("queue_type", ["classic", "quorum"])
    async def test_a_running_worker_uses_nothing_rabbitmq_4_deprecates(
        self, broker: Broker, echo_topology, pika_publisher: PikaPublisher, queue_type: str
    ) -> None:
        """RabbitMQ 4.0 deprecates transient non-exclusive queues and global QoS, and 4.3
        refuses both by default: fleet's queues are durable (or exclusive, a tap's), and
        its prefetch is per consumer."""
        # Given
        path, _ = await echo_topology(queue_type=queue_type)
        vhost = quote(broker.vhost, safe="")
        worker = WorkerProcess("echo", topology_file=path, url=broker.amqp_url, pythonpath=[ROOT])
        # When a worker consumes, answers, and a tap reads the answers
        with worker:
            pika_publisher.publish("orders", "order.placed", order("o-1"), message_id="m-1")
            [answer] = await collect(broker.amqp_url, "answers", 1)
            queues = api_get(broker, f"/api/queues/{vhost}")

            def consuming_channels() -> list[dict[str, Any]]:
                # Channel statistics reach the management API every few seconds.
                channels: list[dict[str, Any]] = api_get(broker, f"/api/vhosts/{vhost}/channels")
                return channels if any(c.get("consumer_count") for c in channels) else []

            channels = await eventually(consuming_channels, what="the worker's channel listed")
        # Then
        assert answer.json()["order_id"] == "o-1"
        assert [q["name"] for q in queues if not (q["durable"] or q["exclusive"])] == []
        assert not [q for q in queues if "x-queue-master-locator" in q["arguments"]]
        # 3.x reports a channel's global prefetch; 4.x's API no longer does (absent: 0).
        assert [c.get("global_prefetch_count", 0) for c in channels] == [0] * len(channels)
        assert [c["prefetch_count"] for c in channels if c["consumer_count"]] == [32]
