"""The circuit breaker on the real broker, with real worker processes: a downstream
that is down for a while, the same load through a worker with a breaker and one
without, and what each sent to the retry tiers and the dead-letter queue.

The downstream is a small HTTP server in the test: 503 while it is down, 200 after.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from aiohttp import web

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.test_cli_status import status
from topology import loads
from topology.apply import apply
from workers.testing import WorkerProcess, eventually, queue_depth

#: How long the downstream is down, from the first message on.
OUTAGE = 20.0
LOAD = 200

RETRY = "{attempts: 2, backoff: 5ms, max_backoff: 10ms, delays: [1s, 2s]}"
TOPOLOGY = f"""
exchanges:
  charges: {{}}
  plain-out: {{}}
  guarded-out: {{}}
queues:
  plain:
    type: classic
    bind: [{{exchange: charges, routing_key: charge.requested}}]
    retry: {RETRY}
  guarded:
    type: classic
    bind: [{{exchange: charges, routing_key: charge.requested}}]
    retry: {RETRY}
  plain-done: {{type: classic, bind: [{{exchange: plain-out}}]}}
  guarded-done: {{type: classic, bind: [{{exchange: guarded-out}}]}}
workers:
  plain:
    module: tests.fixtures.breaker_workers
    queue: plain
    publish_to: plain-out
    prefetch: 8
    concurrency: 4
  guarded:
    module: tests.fixtures.breaker_workers
    queue: guarded
    publish_to: guarded-out
    prefetch: 8
    concurrency: 4
    breaker: {{failures: 5, cool_down: 2s}}
"""


class Downstream:
    """503 until `up_at` (time.monotonic()), 200 after; counts calls per worker."""

    def __init__(self) -> None:
        self.up_at = float("inf")
        self.calls: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        worker = request.match_info["worker"]
        self.calls[worker] += 1
        if time.monotonic() < self.up_at:
            self.failed[worker] += 1
            return web.Response(status=503, text="down")
        return web.Response(text="ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def downstream() -> AsyncIterator[tuple[Downstream, str]]:
    state = Downstream()
    app = web.Application()
    app.router.add_post("/{worker}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def consumers(url: str, queue: str) -> int:
    """Consumers of `queue` right now (passive declare: exact)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0
    finally:
        await connection.close()


async def breaker_state(port: int) -> float | None:
    """The worker's fleet_breaker_state sample from its /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith("fleet_breaker_state{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class TestBreaker:
    async def test_a_breaker_keeps_an_outage_out_of_the_retry_tiers_and_loses_nothing(
        self, broker: Broker, tmp_path: Path, downstream: tuple[Downstream, str]
    ) -> None:
        """With the downstream down for 20 s, the worker without a breaker retries every
        message to the dead-letter queue; the one with a breaker stops consuming, probes
        once per cool-down, and processes everything once the downstream is back."""
        # Given two workers on the same load, one with a breaker, and a downstream down
        state, base = downstream
        topology = loads(TOPOLOGY)
        await apply(topology, broker.amqp_url, management_url=broker.management_url)
        path = tmp_path / "fleet.yaml"
        path.write_text(TOPOLOGY)
        metrics_port = free_port()
        env = {"BREAKER_DOWNSTREAM": base}
        common = {"topology_file": path, "url": broker.amqp_url, "pythonpath": [ROOT], "env": env}
        plain = WorkerProcess("plain", **common)  # type: ignore[arg-type]
        guarded = WorkerProcess(
            "guarded",
            args=["--metrics-port", str(metrics_port)],
            **common,  # type: ignore[arg-type]
        )
        with plain, guarded:
            # When 200 charges arrive at each and the downstream is down for 20 s
            publisher = PikaPublisher(broker.amqp_url)
            try:
                state.up_at = time.monotonic() + OUTAGE
                for i in range(LOAD):
                    publisher.publish(
                        "charges", "charge.requested", {"n": i}, type="Charge", message_id=f"c-{i}"
                    )
            finally:
                publisher.close()

            # Then the breaker opens: the guarded worker stops consuming its queue
            await eventually(
                lambda: bool(guarded.events("worker.breaker.opened")), what="the breaker open"
            )

            async def no_consumer() -> bool:
                return await consumers(broker.amqp_url, "guarded") == 0

            await eventually(no_consumer, what="no consumer on guarded")
            assert await breaker_state(metrics_port) in (1.0, 2.0)  # open, or probing
            assert await consumers(broker.amqp_url, "plain") == 1

            # And `fleet status` says so in its BREAKER column (the plain worker has none)
            async def status_says(breaker: str) -> bool:
                _, rows, _ = await asyncio.to_thread(status, broker, str(path))
                assert rows["QUEUE"][-1] == "BREAKER"
                assert rows["plain"][-1] == "-"
                return rows["guarded"][-1] == breaker

            await eventually(
                lambda: status_says("open"), timeout=OUTAGE, interval=1.0, what="status: open"
            )

            # And every message ends processed or dead-lettered, none lost
            async def settled(queue: str) -> bool:
                done = await queue_depth(broker.amqp_url, f"{queue}-done")
                dead = await queue_depth(broker.amqp_url, f"{queue}.dead")
                return done + dead == LOAD

            await eventually(lambda: settled("plain"), timeout=60, what="plain settled")
            await eventually(lambda: settled("guarded"), timeout=60, what="guarded settled")
            assert await consumers(broker.amqp_url, "guarded") == 1  # closed: consuming again
            assert await breaker_state(metrics_port) == 0.0
            await eventually(lambda: status_says("closed"), interval=1.0, what="status: closed")
            figures = {}
            for name, process in (("plain", plain), ("guarded", guarded)):
                figures[name] = {
                    "processed": await queue_depth(broker.amqp_url, f"{name}-done"),
                    "dead": await queue_depth(broker.amqp_url, f"{name}.dead"),
                    "retried": len(process.events("message.retried")),
                    "calls_failed": state.failed[name],
                }
                for tier in ("1s", "2s"):
                    assert await queue_depth(broker.amqp_url, f"{name}.retry.{tier}") == 0
        opened = guarded.events("worker.breaker.opened")
        print(
            f"outage {OUTAGE:g}s, {LOAD} messages each: without a breaker {figures['plain']}; "
            f"with one {figures['guarded']}; opened {len(opened)} times, "
            f"probes {len(guarded.events('worker.breaker.probing'))}"
        )
        # Without a breaker, the outage outlasts the tiers (1 s + 2 s): most messages are
        # parked (all of them when the machine keeps up), each after two retries
        plain_figures, guarded_figures = figures["plain"], figures["guarded"]
        assert plain_figures["dead"] >= LOAD // 2
        assert plain_figures["retried"] >= 2 * plain_figures["dead"]
        assert plain_figures["processed"] + plain_figures["dead"] == LOAD
        # With one, a few retries, no dead letters, all processed
        assert guarded_figures["dead"] == 0
        assert guarded_figures["processed"] == LOAD
        assert guarded_figures["retried"] <= plain_figures["retried"] // 10
        assert guarded_figures["calls_failed"] <= plain_figures["calls_failed"] // 10
        # Its log tells the story: opened with its reason, probed, closed once the
        # downstream was back
        assert opened[0]["reason"] == "5 transient failures in a row"
        assert opened[0]["was"] == "closed"
        assert [e["was"] for e in opened[1:]] == ["half-open"] * (len(opened) - 1)
        [closed] = guarded.events("worker.breaker.closed")
        assert closed["reason"] == "the probe succeeded"
        assert not plain.events("worker.breaker.opened")
