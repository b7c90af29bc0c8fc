"""A stream's retention as RabbitMQ's queue arguments, and a super stream as the
exchange, partition streams and bindings RabbitMQ's own tooling creates for one."""

from __future__ import annotations

from typing import Any

from topology.duration import Duration
from topology.model import Queue, StreamRetention
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl

#: The arguments retention maps to (checked so a file does not set them twice).
RETENTION_ARGUMENTS = frozenset(
    {"x-max-age", "x-max-length-bytes", "x-stream-max-segment-size-bytes"}
)
# x-max-age takes a whole number and one unit: Y, M, D, h, m or s (no milliseconds).
_AGE_UNITS = (("D", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def whole_seconds(duration: Duration) -> bool:
    """Whether x-max-age can say it exactly (`topology check` refuses it otherwise)."""
    return duration.ms % 1000 == 0


def max_age(duration: Duration) -> str:
    """``7d`` → ``"7D"``, RabbitMQ's spelling; the largest unit that divides it.
    A fraction of a second is rounded up (the check refuses such a file anyway)."""
    for unit, ms in _AGE_UNITS:
        if duration.ms % ms == 0:
            return f"{duration.ms // ms}{unit}"
    return f"{-(-duration.ms // 1000)}s"


def retention_arguments(retention: StreamRetention | None) -> dict[str, Any]:
    """The queue arguments that make RabbitMQ keep what `retention` says."""
    if retention is None:
        return {}
    arguments: dict[str, Any] = {}
    if retention.max_age is not None:
        arguments["x-max-age"] = max_age(retention.max_age)
    if retention.max_length_bytes is not None:
        arguments["x-max-length-bytes"] = retention.max_length_bytes.bytes
    if retention.segment_bytes is not None:
        arguments["x-stream-max-segment-size-bytes"] = retention.segment_bytes.bytes
    return arguments


def partition_names(name: str, partitions: int) -> list[str]:
    """``orders``, 3 → ``orders-0``, ``orders-1``, ``orders-2``."""
    return [f"{name}-{i}" for i in range(partitions)]


def streams_of(name: str, queue: Queue) -> list[str]:
    """The streams a reader of `name` reads: the stream, or each partition."""
    return [name] if queue.partitions is None else partition_names(name, queue.partitions)


def stream_queues(name: str, queue: Queue) -> list[QueueDecl]:
    """The stream itself, or each partition of a super stream, with its retention."""
    arguments = {**queue.arguments, **retention_arguments(queue.stream)}
    names = [name] if queue.partitions is None else partition_names(name, queue.partitions)
    return [QueueDecl(name=n, type="stream", durable=True, arguments=arguments) for n in names]


def super_stream_exchange(name: str) -> ExchangeDecl:
    """The super stream's entry point: publishers pick a partition by its binding key."""
    # x-super-stream marks it for the stream plugin (partition lookup by clients).
    return ExchangeDecl(name=name, type="direct", arguments={"x-super-stream": True})


def super_stream_bindings(name: str, partitions: int) -> list[BindingDecl]:
    """Partition i bound with key "i" and x-stream-partition-order i, as RabbitMQ does."""
    return [
        BindingDecl(
            source=name,
            destination=partition,
            routing_key=str(i),
            arguments={"x-stream-partition-order": i},
        )
        for i, partition in enumerate(partition_names(name, partitions))
    ]
