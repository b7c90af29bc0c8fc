"""Problems of a queue's stream settings: retention, and super stream partitions and key."""

from __future__ import annotations

from topology.model import Queue, Topology, WorkerSpec
from topology.problems import Problem
from topology.streams import RETENTION_ARGUMENTS, whole_seconds


def stream_problems(topology: Topology, name: str, queue: Queue) -> list[Problem]:
    """One problem per mistake, each naming its path under ``queues.<name>``."""
    path = f"queues.{name}"
    if queue.type != "stream":
        return [
            Problem(
                f"{path}.{setting}",
                f"only streams have {what}; this queue is {queue.type} "
                "(set type: stream, or remove it)",
            )
            for setting, what in (
                ("stream", "retention"),
                ("partitions", "partitions"),
                ("key", "a partition key"),
            )
            if getattr(queue, setting) is not None
        ]
    problems: list[Problem] = []
    retention = queue.stream
    if retention is not None:
        if retention.max_age is not None and not whole_seconds(retention.max_age):
            problems.append(
                Problem(
                    f"{path}.stream.max_age",
                    f"{retention.max_age} is not a whole number of seconds "
                    "(RabbitMQ's x-max-age has no milliseconds)",
                )
            )
        for key in sorted(RETENTION_ARGUMENTS & queue.arguments.keys()):
            problems.append(
                Problem(f"{path}.arguments.{key}", "set by the stream: block; remove it here")
            )
    partition_key = queue.key
    if partition_key is not None and (partition_key.field is None) == (
        partition_key.header is None
    ):
        problems.append(
            Problem(
                f"{path}.key",
                "name exactly one of field (a field of the event) or header (a message header)",
            )
        )
    if queue.partitions is None:
        if partition_key is not None:
            problems.append(
                Problem(f"{path}.key", "a key picks a partition: it needs partitions: N")
            )
        return problems
    if partition_key is None:
        problems.append(
            Problem(
                f"{path}.key",
                "a super stream needs the key that picks a partition, for per-key order: "
                "key: {field: customer_id} or key: {header: x-customer}",
            )
        )
    if queue.bind:
        problems.append(
            Problem(
                f"{path}.bind",
                f"a super stream is published to through its exchange {name!r}, by partition "
                "key (binding keys 0..N-1); an exchange binding cannot pick a partition: "
                "remove bind",
            )
        )
    if name in topology.exchanges:
        problems.append(
            Problem(
                path,
                f"the super stream's own exchange is named {name!r}, and exchanges.{name} "
                "declares one too: rename one of them",
            )
        )
    return problems


def stream_worker_problems(name: str, worker: WorkerSpec, queue: Queue) -> list[Problem]:
    """A worker's stream settings (`from`, `consumer`) on a queue that is no stream,
    or a stream's retry delays, which a stream worker cannot use."""
    path = f"workers.{name}"
    if queue.type != "stream":
        return [
            Problem(
                f"{path}.{setting}",
                f"only a worker on a stream has {what}; queue {worker.queue!r} is "
                f"{queue.type} (remove it)",
            )
            for setting, what in (("from", "a start"), ("consumer", "a consumer name"))
            if (worker.start if setting == "from" else worker.consumer) is not None
        ]
    problems = []
    if worker.consumer is not None and not worker.consumer.strip():
        problems.append(Problem(f"{path}.consumer", "a consumer name cannot be empty"))
    # A stream is read one message at a time per partition, in offset order: these
    # queue-consumer policies have nothing to act on there.
    if worker.breaker is not None:
        problems.append(
            Problem(
                f"{path}.breaker",
                "a stream worker has no circuit breaker: it reads in offset order and "
                "stops at a message it cannot park (remove it)",
            )
        )
    if worker.order_by is not None:
        problems.append(
            Problem(
                f"{path}.order_by",
                "a stream worker keeps the stream's order already (one message at a "
                "time per partition; super streams keep each key in one partition): "
                "remove it",
            )
        )
    return problems
