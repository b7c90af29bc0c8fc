"""Workers on a stream, as real `fleet worker run` processes against a real broker:
reading from `from`, parking what cannot be processed with its offset, resuming
after restarts and dropped connections, one replica at a time with failover, and
saying so when retention removed offsets before they were read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aio_pika

from tests.conftest import Broker
from tests.integration.conftest import ROOT
from topology import load
from topology.apply import apply
from workers.runtime import headers as h
from workers.testing import WorkerProcess, collect

TOPOLOGY = """
exchanges:
  sales: {{type: topic}}
  seen: {{type: topic}}
queues:
  sales-log:
    type: stream
    bind: [{{exchange: sales, routing_key: "sale.#"}}]
    retry: {{attempts: 2, backoff: 5ms, max_backoff: 10ms}}
{stream_extra}
  seen:
    type: classic
    bind: [{{exchange: seen, routing_key: "#"}}]
workers:
  tally:
    module: tests.fixtures.stream_workers
    queue: sales-log
    publish_to: seen
{tally_extra}
  books:
    module: tests.fixtures.stream_workers
    queue: sales-log
{books_extra}
"""


async def write_topology(
    tmp_path: Path,
    broker: Broker,
    *,
    stream_extra: str = "",
    tally_extra: str = "    from: first",
    books_extra: str = "    from: first",
) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(
        TOPOLOGY.format(stream_extra=stream_extra, tally_extra=tally_extra, books_extra=books_extra)
    )
    await apply(load(path), broker.amqp_url, management_url=broker.management_url)
    return path


def sale(i: int, amount: int = 10, note: str = "") -> dict[str, Any]:
    return {"sale_id": f"s-{i}", "amount": amount, "note": note}


async def publish(url: str, bodies: list[bytes | dict[str, Any]], start: int = 0) -> None:
    """Publish each body to `sales` with a confirm (ids m-<start+i>)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("sales")
        for i, body in enumerate(bodies, start):
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            await exchange.publish(
                aio_pika.Message(
                    raw,
                    type="StreamSale",
                    message_id=f"m-{i}",
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="sale.made",
            )


def worker(broker: Broker, path: Path, name: str = "tally", **kwargs: Any) -> WorkerProcess:
    process = WorkerProcess(
        name, topology_file=path, url=broker.amqp_url, pythonpath=[ROOT], **kwargs
    )
    process.ready_event = "stream.consuming"
    return process


def offsets_of(answers: list[Any]) -> list[int]:
    return [a.json()["offset"] for a in answers]


class TestReading:
    async def test_every_event_is_handled_from_first_and_a_malformed_one_is_parked_with_its_offset(
        self, tmp_path: Path, broker: Broker
    ) -> None:
        """Typed handling as on a queue; a body that does not decode is parked in the
        worker's own dead-letter queue with its reason and stream offset, and the
        worker moves on to the next offset."""
        path = await write_topology(tmp_path, broker)
        await publish(
            broker.amqp_url, [sale(0), sale(1), b'{"sale_id": 2}', sale(3), sale(4, -1), sale(5)]
        )
        with worker(broker, path):
            answers = await collect(broker.amqp_url, "seen", 4)
            parked = await collect(broker.amqp_url, "sales-log.tally.dead", 2)
        assert offsets_of(answers) == [0, 1, 3, 5]
        assert [a.json()["sale_id"] for a in answers] == ["s-0", "s-1", "s-3", "s-5"]
        assert {a.json()["stream"] for a in answers} == {"sales-log"}
        assert [
            (p.headers[h.REASON], p.headers[h.STREAM_OFFSET], p.message_id) for p in parked
        ] == [
            ("decode", 2, "m-2"),
            ("permanent", 4, "m-4"),
        ]
        assert parked[0].headers[h.STREAM] == "sales-log"
        assert parked[0].headers[h.WORKER] == "tally"
        assert parked[0].body == b'{"sale_id": 2}'
