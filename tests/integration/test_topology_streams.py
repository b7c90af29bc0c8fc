"""Streams and super streams applied to a real RabbitMQ: each test in its own vhost."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Broker
from tests.integration.test_topology_apply import api_get, apply_to, survey_of
from topology import UnsafeChange, loads
from topology.plan import STREAM_RETENTION_NOTE

TOPOLOGY = """
exchanges: {orders: {type: topic}}
queues:
  order-events:
    type: stream
    bind: [{exchange: orders, routing_key: "order.#"}]
    stream: {max_age: %(age)s, max_length_bytes: 10GB, segment_bytes: 100MB}
  customers:
    type: stream
    partitions: 3
    key: {field: customer_id}
    stream: {max_age: 2h}
"""


def streams(age: str = "7d") -> Any:
    return loads(TOPOLOGY % {"age": age})


class TestStreamsOnTheBroker:
    async def test_apply_declares_the_stream_with_its_retention(self, broker: Broker) -> None:
        await apply_to(broker, streams())
        queue = broker.queue("order-events")
        assert queue["type"] == "stream"
        assert queue["arguments"] == {
            "x-queue-type": "stream",
            "x-max-age": "7D",
            "x-max-length-bytes": 10**10,
            "x-stream-max-segment-size-bytes": 10**8,
        }

    async def test_apply_declares_a_super_stream_as_rabbitmq_does(self, broker: Broker) -> None:
        await apply_to(broker, streams())
        exchange = api_get(broker, "exchanges", "customers")
        assert (exchange["type"], exchange["arguments"]) == ("direct", {"x-super-stream": True})
        for i in range(3):
            assert broker.queue(f"customers-{i}")["arguments"] == {
                "x-queue-type": "stream",
                "x-max-age": "2h",
            }
        bound = sorted(
            (b["destination"], b["routing_key"], b["arguments"])
            for b in api_get(broker, "bindings")
            if b["source"] == "customers"
        )
        assert bound == [
            (f"customers-{i}", str(i), {"x-stream-partition-order": i}) for i in range(3)
        ]

    async def test_plan_shows_no_drift_after_apply_and_a_reapply_changes_nothing(
        self, broker: Broker
    ) -> None:
        first = await apply_to(broker, streams())
        assert len(first.applied) == 10  # 2 exchanges, 4 streams, 4 bindings
        current, _ = survey_of(broker, streams())
        assert current.pending == []
        again = await apply_to(broker, streams())
        assert again.applied == []

    async def test_a_changed_retention_is_refused_with_the_policy_advice(
        self, broker: Broker
    ) -> None:
        await apply_to(broker, streams())
        current, _ = survey_of(broker, streams("14d"))
        (change,) = current.pending
        assert change.kind == "change"
        assert not change.in_place
        assert change.differences == ["x-max-age: 7D → 14D", STREAM_RETENTION_NOTE]
        with pytest.raises(UnsafeChange, match=r"order-events.*cannot change in place"):
            await apply_to(broker, streams("14d"))
        assert broker.queue("order-events")["arguments"]["x-max-age"] == "7D"
