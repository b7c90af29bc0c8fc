"""The plain-client examples of docs/wire-format.md publish what a fleet worker reads.

The pika block and the management API's curl call are taken from the page as
written, pointed at the test's vhost, and run; the messages they publish must
decode into the reference fleet's OrderPlaced with fleet's own codec.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from fulfilment.contracts import OrderPlaced
from fulfilment.contracts.orders import OrderPlacedV1, order_placed_v2
from pika.adapters.blocking_connection import BlockingChannel

from contracts import Registry, decode
from tests.conftest import Broker

PAGE = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"


def section(title: str) -> str:
    """The text of one `##` section of the page."""
    text = PAGE.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.fixture
def orders(broker: Broker) -> Iterator[BlockingChannel]:
    """The `orders` exchange with a queue of the test's bound for order.placed."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = connection.channel()
    channel.exchange_declare("orders", "topic", durable=True)
    channel.queue_declare("placed", durable=True)
    channel.queue_bind("placed", "orders", "order.placed")
    yield channel
    connection.close()


def received(channel: BlockingChannel) -> OrderPlaced:
    """The next message on the test's queue, decoded as a worker would."""
    method, properties, body = channel.basic_get("placed", auto_ack=True)
    assert method is not None, "nothing arrived"
    registry = Registry()
    registry.register(OrderPlacedV1)
    registry.register(OrderPlaced)
    event_type = registry.lookup(properties.type, properties.headers["version"])
    event = decode(event_type, body)
    # The page publishes version 1, which a worker on version 2 upcasts.
    assert isinstance(event, OrderPlacedV1)
    upcast = order_placed_v2(event)
    assert upcast.source == "unknown"
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    return upcast


def test_the_pika_example_publishes_an_order_placed(
    broker: Broker, orders: BlockingChannel
) -> None:
    """The Python block, as written, with the test's vhost in its URL."""
    # Given
    code = re.search(r"```python\n(.*?)```", section("Publishing from Python"), re.S)
    assert code is not None
    local = '"amqp://guest:guest@localhost:5672/"'
    assert local in code.group(1), "the example no longer connects to the local broker"
    source = code.group(1).replace(local, repr(broker.amqp_url))
    # When
    exec(compile(source, str(PAGE), "exec"), {})
    # Then
    assert received(orders).order_id == "o-42"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_management_api_example_publishes_an_order_placed(
    broker: Broker, orders: BlockingChannel
) -> None:
    """The curl call, as written, to the test's vhost."""
    # Given
    text = section("From the shell")
    call = text[text.index("    curl ") : text.index("    # {")]
    command = "\n".join(line[4:] for line in call.splitlines())
    assert "/api/exchanges/%2F/orders/publish" in command
    command = command.replace("%2F", quote(broker.vhost, safe=""))
    # When
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    # Then
    assert result.stdout.strip() == '{"routed":true}', result.stdout + result.stderr
    assert received(orders).order_id == "o-45"
