"""The state of every queue a topology manages, for `fleet status`.

Ready and consumer counts come over AMQP (passive declare: exact, now);
unacknowledged counts and rates only the management API knows (averaged
over its sample window, a few seconds behind). A work queue's row carries
its retry tiers' and dead-letter queue's depths; delay queues and streams
have rows of their own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiormq
from aio_pika.abc import AbstractConnection

from topology import Topology
from topology.management import Management, QueueInfo
from topology.names import dead_letter_queue, retry_queue


@dataclass(frozen=True)
class Depth:
    """One queue's figures; `missing` when the broker has no such queue."""

    name: str
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    rate_in: float = 0.0
    rate_out: float = 0.0
    missing: bool = False


@dataclass(frozen=True)
class BreakerStatus:
    """A worker with a circuit breaker: its running processes (its connections) and
    how many of them do not consume its queue: open (or probing, by basic.get)."""

    worker: str
    processes: int
    open: int

    def __str__(self) -> str:
        if self.processes == 0:
            return "no process"
        if self.open == 0:
            return "closed"
        return "open" if self.processes == 1 else f"open {self.open}/{self.processes}"


@dataclass(frozen=True)
class QueueStatus:
    """A managed queue with its retry tiers (label → depth) and dead-letter queue."""

    queue: Depth
    kind: str  # work | delay | stream
    retries: list[tuple[str, Depth]] = field(default_factory=list)
    dead: Depth | None = None
    #: The breakers of the workers consuming it (those that declare one).
    breakers: list[BreakerStatus] = field(default_factory=list)

    @property
    def dead_letters(self) -> int:
        """Messages parked in the dead-letter queue (ready or being inspected)."""
        return 0 if self.dead is None else self.dead.ready + self.dead.unacked

    @property
    def missing(self) -> list[str]:
        """Names of this row's queues that are not on the broker."""
        depths = [self.queue, *(d for _, d in self.retries), *([self.dead] if self.dead else [])]
        return [d.name for d in depths if d.missing]


@dataclass(frozen=True)
class Snapshot:
    """Every managed queue at one moment."""

    rows: list[QueueStatus]

    @property
    def dead_letters(self) -> int:
        return sum(row.dead_letters for row in self.rows)

    @property
    def missing(self) -> list[str]:
        return [name for row in self.rows for name in row.missing]

    @property
    def healthy(self) -> bool:
        """No dead letters anywhere and every managed queue exists."""
        return self.dead_letters == 0 and not self.missing


@dataclass(frozen=True)
class Managed:
    """A managed queue's name, kind and the queues fleet derives from it."""

    name: str
    kind: str  # work | delay | stream
    tiers: list[tuple[str, str]] = field(default_factory=list)  # (delay label, retry queue)
    dead: str | None = None


def managed_queues(topology: Topology) -> list[Managed]:
    """Every queue the topology manages, in the file's order."""
    rows = []
    for name, queue in topology.queues.items():
        if queue.type == "stream":
            rows.append(Managed(name, "stream"))
        elif queue.delay is not None:
            rows.append(Managed(name, "delay"))
        else:
            tiers = [(str(d), retry_queue(name, d)) for d in queue.retry.delays]
            rows.append(Managed(name, "work", tiers, dead_letter_queue(name)))
    return rows


async def snapshot(
    topology: Topology, connection: AbstractConnection, management: Management
) -> Snapshot:
    """Read every managed queue's figures now."""
    listed = {q.name: q for q in await asyncio.to_thread(management.queues)}
    breakers = await _breakers(topology, management)
    channel = await (await connection.channel()).get_underlay_channel()
    rows = []
    for managed in managed_queues(topology):
        name = managed.name
        depth, channel = await _depth(name, listed.get(name), channel, connection, managed.kind)
        retries = []
        for label, queue in managed.tiers:
            tier_depth, channel = await _depth(queue, listed.get(queue), channel, connection)
            retries.append((label, tier_depth))
        dead_depth = None
        if managed.dead is not None:
            dead = managed.dead
            dead_depth, channel = await _depth(dead, listed.get(dead), channel, connection)
        rows.append(QueueStatus(depth, managed.kind, retries, dead_depth, breakers.get(name, [])))
    return Snapshot(rows)


async def _breakers(topology: Topology, management: Management) -> dict[str, list[BreakerStatus]]:
    """Per queue, the breakers of its workers, read from the broker: a worker process
    (a connection named `fleet worker NAME (host:pid)`) whose breaker is open has
    cancelled its consumer. Empty when no worker declares a breaker."""
    guarded = {name: w.queue for name, w in topology.workers.items() if w.breaker is not None}
    if not guarded:
        return {}
    connections = await asyncio.to_thread(management.connections)
    consuming = {(c.queue, c.connection) for c in await asyncio.to_thread(management.consumers)}
    found: dict[str, list[BreakerStatus]] = {}
    for name, queue in guarded.items():
        mine = [c.name for c in connections if c.client_name.startswith(f"fleet worker {name} (")]
        closed = sum((queue, connection) in consuming for connection in mine)
        found.setdefault(queue, []).append(BreakerStatus(name, len(mine), len(mine) - closed))
    return found


async def _depth(
    name: str,
    info: QueueInfo | None,
    channel: aiormq.abc.AbstractChannel,
    connection: AbstractConnection,
    kind: str = "work",
) -> tuple[Depth, aiormq.abc.AbstractChannel]:
    """One queue's figures, and the channel to go on with (a failed passive
    declare closes the one it ran on)."""
    rates = (0.0, 0.0)
    if info is not None:
        stats = info.message_stats
        rates = (stats.publish_details.rate, stats.ack_details.rate)
    if kind == "stream":
        # A stream keeps what it was sent: its "ready" count is its length, from the API.
        if info is None:
            return Depth(name, missing=True), channel
        return Depth(name, info.messages_ready, 0, info.consumers, *rates), channel
    try:
        declared = await channel.queue_declare(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        fresh = await (await connection.channel()).get_underlay_channel()
        return Depth(name, missing=True), fresh
    unacked = info.messages_unacknowledged if info is not None else 0
    return (
        Depth(
            name,
            declared.message_count or 0,
            unacked,
            declared.consumer_count or 0,
            *rates,
        ),
        channel,
    )
