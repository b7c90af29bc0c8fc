"""A worker process's observability from start to stop: its metrics, served on
its port, and the lag poller that runs on each broker connection."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractConnection

from topology import Topology
from topology.management import Management
from workers.observability import exposition
from workers.observability.lag import LagPoller, watched_queues
from workers.observability.metrics import WorkerMetrics
from workers.worker import Worker


class Observer:
    """Counts for one worker and exposes the counts.

    Args:
        worker: the worker (its handlers name the event-type labels).
        queue: the queue it consumes.
        topology: for the retry and dead-letter queues to watch.
        port: the /metrics port; None counts without serving (an embedding
            process serves the default registry itself).
        url: the broker, for the management API's unacked counts.
        management_url: the management API, when not the AMQP host on 15672.
        lag_interval: seconds between queue-depth polls.
    """

    def __init__(
        self,
        worker: Worker,
        queue: str,
        topology: Topology,
        *,
        port: int | None,
        url: str,
        management_url: str | None = None,
        lag_interval: float = 15.0,
    ):
        self.metrics = WorkerMetrics(
            worker.name, queue, (h.event_type.__wire_name__ for h in worker.handlers)
        )
        self.metrics.queues = watched_queues(topology, queue)
        self.port = port
        self._management = Management.for_broker(url, management_url)
        self._poller = LagPoller(self.metrics, self._management, lag_interval)

    def start(self) -> None:
        """Join the process's collector and serve /metrics."""
        exposition.join(self.metrics)
        if self.port is not None:
            exposition.serve(self.port)

    def polling(self, connection: AbstractConnection) -> asyncio.Task[None]:
        """Poll the queues' depths on `connection` in the background until cancelled."""
        return asyncio.create_task(self._poller.run(connection))

    def stop(self) -> None:
        """Leave the collector; close the management client."""
        exposition.leave(self.metrics)
        self._management.close()
