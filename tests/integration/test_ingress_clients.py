"""Slow and abusive HTTP clients against the ingress's real listener: raw sockets on
loopback that trickle, stall or crowd, while other clients are still served.

The limits are made small (about a second) so that each test ends quickly; every
wait for the server has an upper bound, and what is asserted is the server's
behaviour (a 408, a 503, a closed connection), never how long it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import fulfilment.contracts  # noqa: F401  (registers OrderPlaced)
import httpx
import pytest

from contracts import default_registry
from tests.conftest import Broker
from tests.integration.conftest import order
from topology import loads
from topology.apply import apply
from topology.duration import Duration
from topology.model import IngressLimits
from workers.ingress.guard import Listening, listen
from workers.ingress.routes import resolve_routes
from workers.ingress.serve import assemble
from workers.testing import eventually, queue_depth

TOPOLOGY = """
contracts: [fulfilment.contracts]
exchanges:
  orders: {}
queues:
  seen:
    type: classic
    bind: [{exchange: orders, routing_key: order.placed}]
ingress:
  routes:
    /orders: {contract: OrderPlaced, exchange: orders}
"""
#: Small limits, so that a slow client is cut within a second or two.
FAST = IngressLimits(
    head_timeout=Duration(1000),
    idle_timeout=Duration(1000),
    body_timeout=Duration(1000),
    min_body_rate=200,
    keepalive_timeout=Duration(1000),
    max_connections=100,
)
#: Limits no test outlasts: the clients stay connected for as long as the test needs.
PATIENT = IngressLimits(
    head_timeout=Duration(60_000),
    idle_timeout=Duration(60_000),
    keepalive_timeout=Duration(60_000),
    max_connections=100,
)
#: The most any test waits for the server to act.
BOUND = 15.0


@dataclass
class Ingress:
    listening: Listening
    broker: Broker

    @property
    def port(self) -> int:
        return self.listening.port

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=BOUND)


@contextlib.asynccontextmanager
async def ingress_with(broker: Broker, limits: IngressLimits) -> AsyncIterator[Ingress]:
    """The ingress behind its guarded listener on a free loopback port."""
    await apply(loads(TOPOLOGY), broker.amqp_url, management_url=broker.management_url)
    routes = resolve_routes(loads(TOPOLOGY), default_registry, {})
    app, link = assemble(routes, broker.amqp_url, max_backoff=0.2)
    stop = asyncio.Event()
    keeper = asyncio.create_task(link.run(stop))
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        async with listen(app, "127.0.0.1", 0, limits) as listening:
            yield Ingress(listening, broker)
    finally:
        stop.set()
        await keeper


@pytest.fixture
async def fast(broker: Broker) -> AsyncIterator[Ingress]:
    async with ingress_with(broker, FAST) as running:
        yield running


@pytest.fixture
async def patient(broker: Broker) -> AsyncIterator[Ingress]:
    async with ingress_with(broker, PATIENT) as running:
        yield running


class Client:
    """One raw TCP connection to the ingress."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, *, every: float, size: int = 1) -> None:
        """Send `data` `size` bytes at a time, one piece every `every` seconds, until
        all is sent or the server hangs up."""
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(data), size):
                await self.send(data[start : start + size])
                await asyncio.sleep(every)

    async def outcome(self) -> str:
        """What the server did, waiting at most BOUND seconds: the status line it sent
        before closing (``HTTP/1.1 408 Request Timeout``), "closed" or "reset"."""
        try:
            answer = await asyncio.wait_for(self.reader.read(), BOUND)
        except ConnectionResetError:
            return "reset"
        return answer.split(b"\r\n", 1)[0].decode() if answer else "closed"

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def post_head(length: int) -> bytes:
    return (
        f"POST /orders HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def big_order() -> bytes:
    """A valid OrderPlaced of about 10 KB (100 lines, the most an order holds)."""
    lines = [{"sku": f"sku-{i}-" + "x" * 50, "qty": 1, "unit_price_cents": 1} for i in range(100)]
    return json.dumps({**order("o-big"), "lines": lines, "total_cents": 100}).encode()


class TestSlowClientsAreCutOff:
    """A client too slow with its head or body gets a 408 and loses its connection."""

    async def test_partial_headers_then_nothing_is_cut_off(self, fast: Ingress) -> None:
        """The slowloris classic: half a head, then silence."""
        # Given
        client = await Client.connect(fast.port)
        # When
        await client.send(b"POST /orders HTTP/1.1\r\nHost: ingress\r\nContent-Ty")
        # Then
        assert await client.outcome() == "HTTP/1.1 408 Request Timeout"
        await client.close()

    async def test_a_connection_that_sends_nothing_is_cut_off(self, fast: Ingress) -> None:
        """Opening a connection and saying nothing holds it only until the head is due."""
        client = await Client.connect(fast.port)
        assert await client.outcome() == "HTTP/1.1 408 Request Timeout"
        await client.close()

    async def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_head_timeout(
        self, fast: Ingress
    ) -> None:
        """Never idle for long, and never done: cut once the head is overdue."""
        # Given
        client = await Client.connect(fast.port)
        head = post_head(2) + b"{}"
        # When: a byte every 0.1 s would take over 8 s
        sender = asyncio.create_task(client.trickle(head, every=0.1))
        outcome = await client.outcome()
        sender.cancel()
        # Then
        assert outcome == "HTTP/1.1 408 Request Timeout"  # a complete head would be answered
        assert await queue_depth(fast.broker.amqp_url, "seen") == 0
        await client.close()

    async def test_a_body_slower_than_the_minimum_rate_is_cut(self, fast: Ingress) -> None:
        """10 bytes every 0.2 s is 50 B/s, a quarter of the 200 B/s minimum."""
        # Given
        body = big_order()
        client = await Client.connect(fast.port)
        await client.send(post_head(len(body)))
        # When
        sender = asyncio.create_task(client.trickle(body, every=0.2, size=10))
        outcome = await client.outcome()
        sender.cancel()
        # Then
        assert outcome in ("HTTP/1.1 408 Request Timeout", "reset")
        assert await queue_depth(fast.broker.amqp_url, "seen") == 0
        await client.close()

    async def test_a_body_that_stops_half_way_is_cut_quietly(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Half the announced body, then silence: cut when idle, and the handler that was
        reading it ends without an error logged (the client is gone, not the ingress)."""
        async with ingress_with(broker, FAST) as running:
            # Given
            body = big_order()
            client = await Client.connect(running.port)
            # When
            await client.send(post_head(len(body)) + body[: len(body) // 2])
            # Then
            assert await client.outcome() == "HTTP/1.1 408 Request Timeout"
            assert await queue_depth(broker.amqp_url, "seen") == 0
            await client.close()
        # (leaving `ingress_with` waited for every request handler to finish)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []

    async def test_an_idle_kept_alive_connection_is_closed_without_an_answer(
        self, fast: Ingress
    ) -> None:
        """Between requests nothing is overdue: the connection is simply closed."""
        # Given: one complete request on a kept-alive connection
        client = await Client.connect(fast.port)
        await client.send(b"GET /healthz HTTP/1.1\r\nHost: ingress\r\n\r\n")
        status = await asyncio.wait_for(client.reader.readline(), BOUND)
        assert status.startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(client.reader.readuntil(b'{"status": "ok"}'), BOUND)
        # When the client then says nothing, Then
        assert await client.outcome() == "closed"
        await client.close()


class TestOtherClientsAreStillServed:
    """The limits cost a client that sends at a normal pace nothing."""

    async def test_a_large_body_sent_at_once_is_accepted_under_small_limits(
        self, fast: Ingress
    ) -> None:
        """10 KB at loopback speed: far above the minimum rate."""
        async with fast.http() as http:
            response = await http.post(
                "/orders", content=big_order(), headers={"Content-Type": "application/json"}
            )
        assert response.status_code == 202, response.text
        assert await queue_depth(fast.broker.amqp_url, "seen") == 1

    async def test_a_body_sent_steadily_above_the_minimum_rate_is_accepted(
        self, fast: Ingress
    ) -> None:
        """Slow but steady: 100 bytes every 0.1 s (1,000 B/s) for over a second."""
        # Given
        body = json.dumps(order("o-steady")).encode()
        client = await Client.connect(fast.port)
        await client.send(post_head(len(body)))
        # When
        await client.trickle(body, every=0.1, size=100)
        # Then
        status = await asyncio.wait_for(client.reader.readline(), BOUND)
        assert status.startswith(b"HTTP/1.1 202"), status
        await client.close()

    async def test_healthz_and_posts_are_answered_while_fifty_slowloris_sockets_are_open(
        self, patient: Ingress
    ) -> None:
        """Fifty connections holding half a head each tie up nothing but themselves."""
        # Given
        slow = [await Client.connect(patient.port) for _ in range(50)]
        for client in slow:
            await client.send(b"POST /orders HTTP/1.1\r\nHost: ingress\r\nX-Slow: ")
        await eventually(
            lambda: patient.listening.guard.connections >= 50,
            what="all 50 connected",
            timeout=BOUND,
        )
        # When
        async with patient.http() as http:
            health = await http.get("/healthz")
            posted = await http.post("/orders", json=order("o-meanwhile"))
        # Then
        assert health.status_code == 200
        assert posted.status_code == 202, posted.text
        assert patient.listening.guard.connections >= 50  # none of them was cut meanwhile
        for client in slow:
            await client.close()


class TestConnectionCap:
    """Past `max_connections`, a new connection is refused at once, not queued."""

    async def test_a_connection_over_the_cap_is_answered_503_and_closed(
        self, broker: Broker
    ) -> None:
        """Three slots held by slow clients: the fourth is refused; a freed slot is reused."""
        limits = IngressLimits(
            head_timeout=Duration(60_000), idle_timeout=Duration(60_000), max_connections=3
        )
        async with ingress_with(broker, limits) as running:
            # Given
            held = [await Client.connect(running.port) for _ in range(3)]
            for client in held:
                await client.send(b"GET /healthz HTTP/1.1\r\n")
            await eventually(
                lambda: running.listening.guard.connections == 3,
                what="three connections, the cap",
                timeout=BOUND,
            )
            # When
            extra = await Client.connect(running.port)
            await extra.send(b"GET /healthz HTTP/1.1\r\nHost: ingress\r\n\r\n")
            # Then
            assert await extra.outcome() in ("HTTP/1.1 503 Service Unavailable", "reset")
            assert running.listening.guard.connections == 3  # the held ones, untouched
            # And when a slot frees up, the next connection is served
            await held.pop().close()
            await eventually(
                lambda: running.listening.guard.connections < 3,
                what="fewer than three connections",
                timeout=BOUND,
            )
            async with running.http() as http:
                assert (await http.get("/healthz")).status_code == 200
            for client in (*held, extra):
                await client.close()


class TestUnderUvloop:
    """`fleet ingress run` serves on uvloop, whose transports are not asyncio's own."""

    def test_a_slow_client_is_cut_and_one_over_the_cap_refused_on_uvloop(
        self, broker: Broker
    ) -> None:
        """The same guard, the same answers, on the event loop production uses."""
        uvloop = pytest.importorskip("uvloop")
        limits = IngressLimits(
            head_timeout=Duration(1000), idle_timeout=Duration(1000), max_connections=2
        )

        async def scenario() -> tuple[str, str, int]:
            async with ingress_with(broker, limits) as running:
                slow = await Client.connect(running.port)
                await slow.send(b"POST /orders HTTP/1.1\r\nHost: ingress\r\n")
                holder = await Client.connect(running.port)
                await eventually(
                    lambda: running.listening.guard.connections == 2,
                    what="two connections, the cap",
                    timeout=BOUND,
                )
                extra = await Client.connect(running.port)
                refused = await extra.outcome()
                cut = await slow.outcome()
                async with running.http() as http:
                    served = (await http.get("/healthz")).status_code
                for client in (slow, holder, extra):
                    await client.close()
                return refused, cut, served

        refused, cut, served = uvloop.run(scenario())
        assert refused in ("HTTP/1.1 503 Service Unavailable", "reset")
        assert cut == "HTTP/1.1 408 Request Timeout"
        assert served == 200
