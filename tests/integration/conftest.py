"""Fixtures for tests that run real worker processes against the test's vhost."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.conftest import Broker
from topology import Topology, load
from topology.apply import apply

ROOT = Path(__file__).resolve().parents[2]

ECHO_TOPOLOGY = """
exchanges:
  orders: {{}}
  inventory: {{}}
queues:
  echo:
    type: {queue_type}
    bind: [{{exchange: orders, routing_key: order.placed}}]
    retry: {{attempts: 2, backoff: 10ms, max_backoff: 50ms, delays: [1s]}}
  answers:
    type: classic
    bind: [{{exchange: inventory, routing_key: "#"}}]
workers:
  echo:
    module: tests.fixtures.echo_worker
    queue: echo
    publish_to: inventory
    prefetch: {prefetch}
    concurrency: {concurrency}
"""


def order(order_id: str, customer_id: str = "c-1", qty: int = 1) -> dict[str, Any]:
    """An OrderPlaced body as a plain client would send it."""
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "total_cents": 600 * qty,
        "lines": [{"sku": "apple", "qty": qty, "unit_price_cents": 600}],
    }


class PikaPublisher:
    """Publishes the way any AMQP client would: plain pika, JSON body, standard properties."""

    def __init__(self, url: str):
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str | dict[str, Any],
        *,
        type: str | None = "OrderPlaced",
        message_id: str | None = None,
        correlation_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """Publish persistent, mandatory, and wait for the confirm."""
        payload = json.dumps(body) if isinstance(body, dict) else body
        self._channel.basic_publish(
            exchange,
            routing_key,
            payload,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                type=type,
                message_id=message_id,
                correlation_id=correlation_id,
                headers=headers if headers is not None else {"version": 1},
            ),
            mandatory=True,
        )

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()


@pytest.fixture
def pika_publisher(broker: Broker) -> Iterator[PikaPublisher]:
    """A plain pika publisher on the test's vhost."""
    publisher = PikaPublisher(broker.amqp_url)
    yield publisher
    publisher.close()


@pytest.fixture
def echo_topology(tmp_path: Path, broker: Broker) -> Callable[..., Any]:
    """Write the echo topology (with the given settings), apply it, return (path, Topology)."""

    async def make(
        queue_type: str = "classic", prefetch: int = 32, concurrency: int = 8
    ) -> tuple[Path, Topology]:
        path = tmp_path / "topology.yaml"
        path.write_text(
            ECHO_TOPOLOGY.format(queue_type=queue_type, prefetch=prefetch, concurrency=concurrency)
        )
        topology = load(path)
        await apply(topology, broker.amqp_url, management_url=broker.management_url)
        return path, topology

    return make


PROBE_TOPOLOGY = """
exchanges:
  probes: {{}}
  seen: {{}}
queues:
  probes:
    type: {queue_type}
    bind: [{{exchange: probes, routing_key: "#"}}]
    retry: {{attempts: 2, backoff: 5ms, max_backoff: 10ms, delays: [200ms]}}
  seen:
    type: classic
    bind: [{{exchange: seen, routing_key: "#"}}]
workers:
  probe:
    module: tests.fixtures.probe_worker
    queue: probes
    publish_to: seen
    prefetch: 32
    concurrency: 8
{extra}"""


@pytest.fixture
def probe_topology(tmp_path: Path, broker: Broker) -> Callable[..., Any]:
    """Write the probe topology (hostile-input tests), apply it, return its path."""

    async def make(queue_type: str = "classic", faults: bool = False) -> Path:
        path = tmp_path / "probe.yaml"
        extra = "    faults: seen\n" if faults else ""
        path.write_text(PROBE_TOPOLOGY.format(queue_type=queue_type, extra=extra))
        await apply(load(path), broker.amqp_url, management_url=broker.management_url)
        return path

    return make
