"""The bench's exchanges and queues, as a fleet topology file.

One text serves every contender: the parent applies it with fleet's own
`topology.apply` (so the queues are exactly what a fleet deployment gets:
durable classic queues, with their derived retry and dead-letter queues), and
the fleet contender loads it to build its WorkerSettings. The other contenders
only use the names below and declare nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from topology import Topology

ORDERS = "orders"  # exchange OrderPlaced is published to (publish scenario)
INVENTORY = "inventory"  # exchange the saga step's StockReserved goes to
OUTBOX = "bench-outbox"  # exchange the outbox latency's relay publishes to (→ LATENCY)

DRAIN = "bench-drain"  # pre-filled, drained by every consumer scenario
DRAIN_QUORUM = "bench-drain-quorum"  # the same drain on a quorum queue (fleet vs the C client)
LATENCY = "bench-latency"  # fed by the paced publisher
FOLLOW = "bench-follow"  # collects the saga step's follow-ons
PUBLISHED = "bench-published"  # collects the publish scenario's messages
STREAM = "bench-stream"  # the stream the replay scenario reads (filled once a run)
REPLAYED = "bench-replayed"  # where the replay scenario publishes
STREAM_DRAIN = "bench-stream-drain"  # the stream the stream drain reads (filled once a run)
QUORUM = "bench-quorum"  # the stream drain's events again, in a quorum queue

#: Every queue a measurement may leave messages in (purged before each one).
QUEUES = (DRAIN, DRAIN_QUORUM, LATENCY, FOLLOW, PUBLISHED, REPLAYED, QUORUM)

MODULE = "tests.bench.contenders.fleet_workers"
PREFETCH = 256
# The baselines run up to `prefetch` callbacks at once (aiormq starts a task
# per delivery), so fleet gets the same: concurrency = prefetch.
CONCURRENCY = 256
#: Claims per inbox transaction for the grouped-commit worker.
COMMIT_BATCH = 64
#: The insert workers' prefetch (scenario batch): two batches of 500 (the default
#: max_size), so one gathers while the other runs.
BATCH_PREFETCH = 1000

#: A consumer job's role → the worker of `TOPOLOGY` that plays it in fleet.
WORKERS = {
    "drain": "drain",
    "drain-quorum": "drain_quorum",
    "drain-grouped": "drain_grouped",
    "drain-alone": "drain_alone",
    "saga": "saga",
    "latency": "latency",
    "batch-insert": "batch_insert",
    "single-insert": "single_insert",
    "stream-drain": "stream_drain",
    "quorum-drain": "quorum_drain",
}

TOPOLOGY = f"""
version: 1
exchanges:
  {ORDERS}: {{type: topic}}
  {INVENTORY}: {{type: topic}}
  {OUTBOX}: {{type: topic}}
queues:
  {DRAIN}: {{type: classic, retry: {{attempts: 1, delays: [5s]}}}}
  {DRAIN_QUORUM}: {{type: quorum, retry: {{attempts: 1, delays: [5s]}}}}
  {LATENCY}:
    type: classic
    retry: {{attempts: 1, delays: [5s]}}
    bind: [{{exchange: {OUTBOX}, routing_key: order.placed}}]
  {FOLLOW}:
    type: classic
    bind: [{{exchange: {INVENTORY}, routing_key: stock.reserved}}]
  {PUBLISHED}:
    type: classic
    bind: [{{exchange: {ORDERS}, routing_key: order.placed}}]
  {STREAM}: {{type: stream}}
  {REPLAYED}: {{type: classic}}
  {STREAM_DRAIN}: {{type: stream}}
  {QUORUM}: {{type: quorum, retry: {{attempts: 1, delays: [5s]}}}}
workers:
  drain: {{module: {MODULE}, queue: {DRAIN}, prefetch: {PREFETCH}, concurrency: {CONCURRENCY}}}
  drain_quorum:
    module: {MODULE}
    queue: {DRAIN_QUORUM}
    prefetch: {PREFETCH}
    concurrency: {CONCURRENCY}
  # The same worker with the inbox's group commit (scenario f).
  drain_grouped:
    module: {MODULE}
    queue: {DRAIN}
    prefetch: {PREFETCH}
    concurrency: {CONCURRENCY}
    commit_batch: {COMMIT_BATCH}
  # And with a transaction per delivery.
  drain_alone:
    module: {MODULE}
    queue: {DRAIN}
    prefetch: {PREFETCH}
    concurrency: {CONCURRENCY}
    commit_batch: 1
  saga:
    module: {MODULE}
    queue: {DRAIN}
    publish_to: {INVENTORY}
    prefetch: {PREFETCH}
    concurrency: {CONCURRENCY}
  # Scenario stream drain: the do-nothing handler on a stream (a fresh consumer
  # name each round, so each reads from the first offset) and on a quorum queue.
  stream_drain: {{module: {MODULE}, queue: {STREAM_DRAIN}, from: first}}
  quorum_drain:
    module: {MODULE}
    queue: {QUORUM}
    prefetch: {PREFETCH}
    concurrency: {CONCURRENCY}
  latency: {{module: {MODULE}, queue: {LATENCY}, prefetch: {PREFETCH}, concurrency: {CONCURRENCY}}}
  # A row per message into PostgreSQL: in batches, or one INSERT each (scenario batch).
  batch_insert:
    module: {MODULE}
    queue: {DRAIN}
    prefetch: {BATCH_PREFETCH}
    concurrency: {CONCURRENCY}
  single_insert:
    module: {MODULE}
    queue: {DRAIN}
    prefetch: {BATCH_PREFETCH}
    concurrency: {CONCURRENCY}
"""


def bench_topology() -> Topology:
    """The topology above, parsed by fleet's loader."""
    from topology.load import loads

    return loads(TOPOLOGY, source="<tests.bench.layout>")
