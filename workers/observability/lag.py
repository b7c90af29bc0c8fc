"""How far behind a worker is, reported in its own metrics.

Every `interval` the worker reads its queue's ready count and consumer count
(passive queue.declare, exact) and the depths of its retry and dead-letter
queues, plus the unacknowledged counts, which only the management API knows
(its figures lag by the statistics interval, 5 s by default). An alert on
"lag growing" or "dead letters present" then needs nothing but the workers'
metrics. A failed poll is counted and logged once; the worker goes on.

The passive declares need no permission, so a least-privilege user
(`access.users`) polls its queues like any other. The management API refuses
a user without the `management` tag: the poller then says so once
(`lag.unacked_unavailable`) and goes on without unacked counts.
"""

from __future__ import annotations

import asyncio

import aiormq
import structlog
from aio_pika.abc import AbstractConnection
from aiormq.abc import AbstractChannel

from topology import BrokerUnreachable, ManagementRefused, Topology
from topology.management import Management
from topology.names import dead_letter_queue, retry_queue
from workers.observability.metrics import QueueDepth, WorkerMetrics
from workers.runtime.connection import CONNECTION_ERRORS

log = structlog.get_logger("fleet.lag")

_POLL_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    aiormq.exceptions.AMQPError,
    BrokerUnreachable,
)


def watched_queues(topology: Topology, queue: str) -> dict[str, QueueDepth]:
    """The worker's queue, its retry tiers and its dead-letter queue, by name."""
    depths = {queue: QueueDepth("work")}
    for delay in topology.queues[queue].retry.delays:
        depths[retry_queue(queue, delay)] = QueueDepth("retry")
    depths[dead_letter_queue(queue)] = QueueDepth("dead")
    return depths


class LagPoller:
    """Fills `metrics.queues` every `interval` seconds while it runs.

    Args:
        metrics: the worker's metrics; its `queues` name what to poll.
        management: the broker's management API (for unacked counts), if reachable.
        interval: seconds between polls.
    """

    def __init__(self, metrics: WorkerMetrics, management: Management | None, interval: float):
        self.metrics = metrics
        self.management = management
        self.interval = interval
        self._warned = False

    async def run(self, connection: AbstractConnection) -> None:
        """Poll until cancelled."""
        channel: AbstractChannel | None = None
        while True:
            try:
                if channel is None or channel.is_closed:
                    channel = await (await connection.channel()).get_underlay_channel()
                await self.poll(channel)
            except _POLL_ERRORS as error:
                self._failed(error)
            await asyncio.sleep(self.interval)

    async def poll(self, channel: AbstractChannel) -> None:
        """Read every watched queue's figures once."""
        for name, depth in self.metrics.queues.items():
            try:
                declared = await channel.queue_declare(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                # The queue is gone (the channel with it): say so by reporting nothing.
                depth.ready = depth.consumers = depth.unacked = None
                raise
            depth.ready = declared.message_count
            depth.consumers = declared.consumer_count
        if self.management is not None:
            try:
                unacked = await asyncio.to_thread(self._unacked)
            except ManagementRefused as refused:
                # Permanent for this user: stop asking rather than fail every poll.
                self.management = None
                log.warning(
                    "lag.unacked_unavailable",
                    worker=self.metrics.worker,
                    error=str(refused),
                    fix="give the user the management tag (access.management: true)",
                )
                return
            for name, depth in self.metrics.queues.items():
                depth.unacked = unacked.get(name)

    def _unacked(self) -> dict[str, int]:
        assert self.management is not None
        found = {}
        for name in self.metrics.queues:
            info = self.management.queue(name)
            if info is not None:
                found[name] = info.messages_unacknowledged
        return found

    def _failed(self, error: BaseException) -> None:
        self.metrics.lag_polls_failed += 1
        if not self._warned:
            self._warned = True
            log.warning("lag.poll_failed", worker=self.metrics.worker, error=str(error))
