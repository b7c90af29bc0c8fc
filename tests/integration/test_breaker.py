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
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx
import pytest
from aiohttp import web

from tests.conftest import Broker
from tests.integration.conftest import ROOT, PikaPublisher
from tests.integration.test_cli_status import status
from topology import loads
from topology.apply import apply
from topology.management import ConnectionInfo, Management
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


LONE = """
exchanges:
  charges: {{}}
  guarded-out: {{}}
queues:
  guarded:
    type: {queue_type}
    bind: [{{exchange: charges, routing_key: charge.requested}}]
    retry: {{attempts: 1, delays: [1s]}}
  guarded-done: {{type: classic, bind: [{{exchange: guarded-out}}]}}
workers:
  guarded:
    module: tests.fixtures.breaker_workers
    queue: guarded
    publish_to: guarded-out
    prefetch: 2
    concurrency: 1
    breaker: {breaker}
"""


async def lone_worker(
    broker: Broker, tmp_path: Path, base: str, *, queue_type: str, breaker: str
) -> WorkerProcess:
    """The guarded worker alone, its topology applied; not started."""
    text = LONE.format(queue_type=queue_type, breaker=breaker)
    await apply(loads(text), broker.amqp_url, management_url=broker.management_url)
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return WorkerProcess(
        "guarded",
        topology_file=path,
        url=broker.amqp_url,
        pythonpath=[ROOT],
        env={"BREAKER_DOWNSTREAM": base},
    )


def charges(broker: Broker, n: int) -> None:
    publisher = PikaPublisher(broker.amqp_url)
    try:
        for i in range(n):
            publisher.publish(
                "charges", "charge.requested", {"n": i}, type="Charge", message_id=f"c-{i}"
            )
    finally:
        publisher.close()


async def accounted(url: str) -> int:
    """Messages in the guarded worker's queues: waiting, retrying, done or parked."""
    names = ("guarded", "guarded.retry.1s", "guarded-done", "guarded.dead")
    return sum([await queue_depth(url, name) for name in names])


class TestBreakerFailurePaths:
    async def test_an_error_rate_opens_it_on_a_quorum_queue_and_a_stop_while_open_loses_nothing(
        self, broker: Broker, tmp_path: Path, downstream: tuple[Downstream, str]
    ) -> None:
        """The error-rate form opens it; SIGTERM while it is open drains and exits 0, and
        every message is still in the queue, its retry tier or already parked."""
        # Given a worker whose breaker opens at half of at least 4 calls failing
        state, base = downstream
        process = await lone_worker(
            broker,
            tmp_path,
            base,
            queue_type="quorum",
            breaker="{error_rate: 0.5, window: 30s, min_calls: 4, cool_down: 60s}",
        )
        with process:
            # When 50 charges arrive while the downstream is down
            charges(broker, 50)
            await eventually(
                lambda: bool(process.events("worker.breaker.opened")), what="the breaker open"
            )

            async def no_consumer() -> bool:
                return await consumers(broker.amqp_url, "guarded") == 0

            await eventually(no_consumer, what="no consumer on guarded")
            # And the worker is stopped while it is open
            code = await asyncio.to_thread(process.stop)
        # Then it drained and exited cleanly
        assert code == 0, process.output[-10:]
        [stopped] = process.events("worker.stopped")
        assert stopped["drained"] is True
        [opened] = process.events("worker.breaker.opened")
        assert opened["reason"] == "4 of 4 calls failed in 30s"
        # And nothing is lost: all 50 are waiting, retrying or parked, none processed
        await eventually(lambda: _equals(accounted(broker.amqp_url), 50), what="50 accounted for")
        assert await queue_depth(broker.amqp_url, "guarded-done") == 0
        assert stopped["retried"] <= 6  # the 4 that opened it, and the prefetched 2 at most
        assert state.failed["guarded"] == stopped["retried"] + stopped["dead_lettered"]

    async def test_after_a_reconnect_it_starts_closed_and_consumes_at_once(
        self, broker: Broker, tmp_path: Path, downstream: tuple[Downstream, str]
    ) -> None:
        """A breaker is made per connection: a lost connection ends an open one's wait."""
        # Given a worker whose breaker opened with a long cool-down
        state, base = downstream
        process = await lone_worker(
            broker, tmp_path, base, queue_type="classic", breaker="{failures: 3, cool_down: 5m}"
        )
        with process:
            charges(broker, 30)
            await eventually(
                lambda: bool(process.events("worker.breaker.opened")), what="the breaker open"
            )
            # When the downstream is back and the broker closes the worker's connection
            state.up_at = time.monotonic()
            management = Management.for_broker(broker.amqp_url, broker.management_url)
            with management:
                # The management API lists a connection once its first statistics are in.
                mine: list[ConnectionInfo] = []

                async def listed() -> bool:
                    mine[:] = [
                        c
                        for c in await asyncio.to_thread(management.connections)
                        if c.client_name.startswith("fleet worker guarded (")
                    ]
                    return bool(mine)

                await eventually(listed, timeout=15, what="the worker's connection listed")
                [connection] = mine
                async with httpx.AsyncClient(auth=("guest", "guest")) as client:
                    answer = await client.delete(
                        f"{broker.management_url.replace('guest:guest@', '')}/api/connections/"
                        f"{quote(connection.name, safe='')}"
                    )
                    assert answer.status_code == 204, answer.text
            # Then it reconnects consuming, and handles all 30 long before the cool-down
            await eventually(
                lambda: _equals(queue_depth(broker.amqp_url, "guarded-done"), 30),
                timeout=30,
                what="30 processed",
            )
        assert len(process.events("worker.consuming")) == 2
        assert await queue_depth(broker.amqp_url, "guarded.dead") == 0
        assert not process.events("worker.breaker.closed")  # no probe: a new, closed breaker


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected
