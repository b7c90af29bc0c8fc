"""Flow control on the real broker: a rate limit holds deliveries to its rate, and a
handler's Retry(after=) waits in the retry tier that covers the downstream's delay.

The workers run in the test's process (the real runtime, each test its own
vhost), so their handlers' timestamps can be read directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from tests.conftest import Broker
from tests.fixtures import flow_workers
from tests.integration.conftest import PikaPublisher
from topology import Topology, loads
from topology.apply import apply
from workers.runtime.observers import Counters
from workers.runtime.service import WorkerSettings, run_worker
from workers.runtime.shutdown import Shutdown
from workers.testing import eventually, queue_depth

TOPOLOGY = """
exchanges:
  flow: {}
queues:
  paced:
    type: classic
    bind: [{exchange: flow, routing_key: paced.sent}]
  patient:
    type: classic
    bind: [{exchange: flow, routing_key: quota.sent}]
    retry: {attempts: 3, backoff: 1ms, max_backoff: 2ms, delays: [200ms, 1s, 2s]}
  mixed:
    type: classic
    bind:
      - {exchange: flow, routing_key: paced.mixed}
      - {exchange: flow, routing_key: hurried.mixed}
workers:
  paced: {module: tests.fixtures.flow_workers, queue: paced, rate: 50/s, burst: 1}
  patient: {module: tests.fixtures.flow_workers, queue: patient}
  mixed:
    module: tests.fixtures.flow_workers
    queue: mixed
    prefetch: 256
    concurrency: 64
    handler_rates: {Paced: {rate: 40/s}}
"""


@asynccontextmanager
async def running(topology: Topology, name: str, url: str) -> AsyncIterator[list[Counters]]:
    """Worker `name` consuming in this process until the block ends; the list yielded
    holds its counters once it has stopped."""
    shutdown, ready = Shutdown(), asyncio.Event()
    task = asyncio.create_task(
        run_worker(WorkerSettings.from_topology(topology, name, url), shutdown, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), 30)
    counters: list[Counters] = []
    try:
        yield counters
    finally:
        shutdown.request()
        counters.append(await asyncio.wait_for(task, 60))


async def topology_on(broker: Broker) -> Topology:
    topology = loads(TOPOLOGY)
    await apply(topology, broker.amqp_url, management_url=broker.management_url)
    return topology


def published(
    broker: Broker, make: Callable[[int], tuple[str, dict[str, object], str]], n: int
) -> None:
    publisher = PikaPublisher(broker.amqp_url)
    try:
        for i in range(n):
            routing_key, body, type_name = make(i)
            publisher.publish("flow", routing_key, body, type=type_name, message_id=f"m-{i}")
    finally:
        publisher.close()


class TestRateLimit:
    async def test_a_50_per_second_limit_holds_1000_messages_to_50_per_second(
        self, broker: Broker
    ) -> None:
        # Given 1,000 messages waiting for a worker limited to 50/s
        topology = await topology_on(broker)
        flow_workers.paced_at.clear()
        published(broker, lambda i: ("paced.sent", {"n": i}, "Paced"), 1000)
        # When it consumes them all
        async with running(topology, "paced", broker.amqp_url) as counters:
            await eventually(
                lambda: len(flow_workers.paced_at) >= 1000, timeout=60, what="1,000 handled"
            )
        # Then the rate between the first handler call and the last is 50/s within 10%
        stamps = flow_workers.paced_at
        achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        print(f"rate limit 50/s over {len(stamps)} messages: achieved {achieved:.2f}/s")
        assert len(stamps) == 1000
        assert 45 <= achieved <= 55, achieved
        # Held, not retried: each processed once, none through a retry tier
        assert (counters[0].processed, counters[0].retried) == (1000, 0)
        assert counters[0].throttled >= 990

    async def test_a_handler_limit_paces_its_handler_and_leaves_the_others_alone(
        self, broker: Broker
    ) -> None:
        # Given 200 messages for a handler limited to 40/s and 200 for one without a limit
        topology = await topology_on(broker)
        flow_workers.paced_at.clear()
        flow_workers.hurried_at.clear()
        published(
            broker,
            lambda i: (
                ("paced.mixed", {"n": i}, "Paced")
                if i % 2
                else ("hurried.mixed", {"n": i}, "Hurried")
            ),
            400,
        )
        # When the worker consumes them
        async with running(topology, "mixed", broker.amqp_url):
            await eventually(
                lambda: len(flow_workers.paced_at) >= 200, timeout=30, what="200 limited handled"
            )
        # Then the limited handler kept to 40/s, and the other was done long before
        stamps = flow_workers.paced_at
        achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        unlimited_done = flow_workers.hurried_at[-1] - stamps[0]
        print(
            f"handler limit 40/s: achieved {achieved:.2f}/s; "
            f"unlimited done in {unlimited_done:.2f}s"
        )
        assert 36 <= achieved <= 44, achieved
        assert len(flow_workers.hurried_at) == 200
        assert unlimited_done < 2.0, unlimited_done


class TestRetryAfter:
    async def test_a_retry_after_1_5s_waits_in_the_2s_tier_then_is_processed(
        self, broker: Broker
    ) -> None:
        # Given a worker whose downstream answers the first call 429 Retry-After 1.5s,
        # with retry tiers of 200ms, 1s and 2s
        topology = await topology_on(broker)
        flow_workers.quota_calls.clear()
        async with running(topology, "patient", broker.amqp_url):
            # When a message arrives
            started = time.monotonic()
            published(broker, lambda i: ("quota.sent", {"after": 1.5}, "Quota"), 1)

            # Then it waits in the 2s tier (not the shorter ones), once, no in-process retry
            async def in_the_2s_tier() -> bool:
                return await queue_depth(broker.amqp_url, "patient.retry.2s") == 1

            await eventually(in_the_2s_tier, what="the message in patient.retry.2s")
            assert await queue_depth(broker.amqp_url, "patient.retry.1s") == 0
            # And it is processed afterwards
            await eventually(lambda: len(flow_workers.quota_calls) >= 2, timeout=15, what="2 calls")
            await asyncio.sleep(0.3)  # no further call comes
            assert await queue_depth(broker.amqp_url, "patient.dead") == 0
        first, second = flow_workers.quota_calls
        waited = second[0] - first[0]
        print(f"Retry(after=1.5): called again after {waited:.2f}s")
        assert len(flow_workers.quota_calls) == 2
        assert (first[1], first[2]) == (None, 1)
        assert second[1] == 1  # one retry used, though it took the third tier
        assert 2.0 <= waited < 5.0, waited
        assert first[0] >= started
