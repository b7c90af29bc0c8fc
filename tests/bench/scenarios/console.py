"""i (issue 20). The console's failures page with 10,000 dead letters in one queue.

The queue `bench-console.dead` (quorum, as fleet declares it) is filled once
with 10,000 parked messages in four failure groups; the console runs in this
process on a free port, and each round times three GETs of /failures:

- `console failures 10k` · `indexed`: the page answered from the console's
  read of the queue (what an operator gets every time after the first view;
  reads older than a few seconds are renewed in the background);
- · `filtered`: the same with a body-substring filter;
- · `fresh read`: the read dropped first, so the request browses all 10,000
  messages (unacked, then returned in order) before answering.

After the rounds the queue must still hold all 10,000 messages, in their
order: browsing consumes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
from aiohttp import web

from tests.bench.bench import Bench
from tests.bench.results import Series, Skip
from tests.bench.scenarios.collect import Collector
from topology import load
from topology.apply import apply
from workers.console.app import CONSOLE, Settings, make_app
from workers.console.browse import browse
from workers.runtime import headers as h

SCENARIO = "console failures 10k"
QUEUE = "bench-console"
DEAD = f"{QUEUE}.dead"
COUNT = 10_000
INDEXED, FILTERED, FRESH = "indexed", "filtered", "fresh read"
TOPOLOGY = f"""
exchanges:
  bench-console: {{type: topic}}
queues:
  {QUEUE}:
    type: quorum
    bind: [{{exchange: bench-console, routing_key: "#"}}]
    retry: {{attempts: 2, delays: [1s]}}
"""
GROUPS = (
    ("decode", "InvalidPayload"),
    ("permanent", "CardExpired"),
    ("retries-exhausted", "Unavailable"),
    ("internal", "KeyError"),
)


async def run(bench: Bench) -> list[Series]:
    collector = Collector(bench, unit="ms", higher_is_better=False, baseline=INDEXED)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "fleet.yaml"
        path.write_text(TOPOLOGY)
        topology = load(path)
        await apply(topology, bench.url, management_url=bench.config.management_url)
        bench.progress(f"console · filling {DEAD} with {COUNT:,} dead letters …")
        await _fill(bench.url)
        before = await _contents(bench.url)
        if len(before) != COUNT:
            raise Skip(f"{DEAD} holds {len(before)} messages, not {COUNT}")
        settings = Settings(
            topology=topology, topology_file=str(path), amqp_url=bench.url,
            management_url=bench.config.management_url, audit_file=Path(scratch) / "audit.jsonl",
            max_age=3600.0,
        )  # fmt: skip
        async with _serving(settings) as (base, app):
            index = app[CONSOLE].ready[2]
            async with aiohttp.ClientSession() as client:
                await _get(client, f"{base}/failures?queue={DEAD}")  # the first read
                for number in range(1, bench.config.rounds + 1):
                    where = f"console · round {number}/{bench.config.rounds}"
                    for contender, query in ((INDEXED, ""), (FILTERED, "&q=o-4242"),
                                             (FRESH, "")):  # fmt: skip
                        if contender == FRESH:
                            index.forget(DEAD)
                        url = f"{base}/failures?queue={DEAD}{query}"
                        ms = await collector.attempt(SCENARIO, contender, _get(client, url))
                        if ms is not None:
                            collector.add(SCENARIO, contender, ms)
                            bench.progress(f"{where} · {contender}: {ms:,.0f} ms")
        after = await _contents(bench.url)
        if after != before:
            raise RuntimeError(f"browsing changed {DEAD}: {len(before)} → {len(after)} messages")
        bench.progress(f"console · {DEAD} unchanged after browsing ({len(after):,} in order)")
    await bench.queues.purge(DEAD)
    return collector.series


async def _get(client: aiohttp.ClientSession, url: str) -> float:
    """Milliseconds until the whole page has arrived."""
    started = time.perf_counter()
    async with client.get(url) as response:
        text = await response.text()
        if response.status != 200 or "in bench-console.dead" not in text:
            raise TimeoutError(f"the page answered {response.status}")
    return (time.perf_counter() - started) * 1000


async def _fill(url: str) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await (await channel.get_queue(DEAD)).purge()
        batch = []
        for i in range(COUNT):
            reason, error_type = GROUPS[i % len(GROUPS)]
            body = (
                f'{{"order_id": "o-{i}", "customer_id": "c-{i}", "total_cents": 120, '
                f'"lines": [{{"sku": "apple", "qty": 1, "unit_price_cents": 120}}]}}'
            ).encode()
            message = aio_pika.Message(
                body, message_id=f"m-{i}", type="OrderPlaced", content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={h.REASON: reason, h.ERROR_TYPE: error_type, h.ATTEMPTS: 4,
                         h.ERROR_MESSAGE: f"{error_type} while handling o-{i}",
                         h.WORKER: "bench", h.LAST_FAILURE: "2026-01-01T00:00:00.000+00:00"},
            )  # fmt: skip
            batch.append(channel.default_exchange.publish(message, routing_key=DEAD))
            if len(batch) == 500:
                await asyncio.gather(*batch)
                batch.clear()
        await asyncio.gather(*batch)
    finally:
        await connection.close()


async def _contents(url: str) -> list[str | None]:
    connection = await aio_pika.connect(url)
    try:
        browsed = await browse(connection, DEAD, limit=COUNT * 2)
        return [m.header.properties.message_id for m in browsed.messages]
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[str, web.Application]]:
    app = make_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()
