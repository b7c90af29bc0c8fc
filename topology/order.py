"""A worker's per-key order as the topology file writes it, and the mistakes in it.

    order_by: order_id           # a top-level field of the event's JSON body
    order_by: header:x-tenant    # an AMQP header of the message

Deliveries with the same key are handled one after another, different keys at
once up to `concurrency` (docs/concepts/flow-control.md: per-key order).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from topology.model import Queue, WorkerSpec
from topology.problems import Problem

#: `order_by: header:NAME` reads the key from a message header.
HEADER_PREFIX = "header:"
#: The queue argument that lets one consumer at a time take a queue's messages.
SINGLE_ACTIVE_CONSUMER = "x-single-active-consumer"

_FORMS = (
    "a top-level field of the event (order_by: order_id) or a header (order_by: header:x-tenant)"
)


class OrderBy(NamedTuple):
    """Where a delivery's ordering key is read from."""

    source: Literal["field", "header"]
    name: str

    def __str__(self) -> str:
        return f"{HEADER_PREFIX}{self.name}" if self.source == "header" else self.name


def parse_order_by(text: str) -> OrderBy:
    """``order_id`` → a field; ``header:x-tenant`` → a header.

    Raises:
        ValueError: empty, a header prefix without a name, or a field that is no
            field name (a dotted path: only top-level fields are read).
    """
    if text.startswith(HEADER_PREFIX):
        name = text[len(HEADER_PREFIX) :]
        if not name.strip():
            raise ValueError(f"{text!r} names no header: write {HEADER_PREFIX}x-tenant")
        return OrderBy("header", name)
    if not text.strip():
        raise ValueError(f"empty: name {_FORMS}")
    if not text.isidentifier():
        raise ValueError(f"{text!r} is not a field name: order_by takes {_FORMS}")
    return OrderBy("field", text)


def order_problems(worker: str, spec: WorkerSpec, queue: Queue | None) -> list[Problem]:
    """Problems of `workers.<worker>.order_by` msgspec cannot see, each naming its path.

    Whether a handled contract has the field is checked where the worker's code is
    loaded (`workers.runtime.ordering.order_problem`)."""
    if spec.order_by is None:
        return []
    path = f"workers.{worker}.order_by"
    try:
        parse_order_by(spec.order_by)
    except ValueError as error:
        return [Problem(path, str(error))]
    if spec.replicas > 1 and not (queue is not None and _single_active(queue)):
        return [
            Problem(
                path,
                f"order holds within each process; with replicas: {spec.replicas} two "
                "processes may take messages of one key at once: declare the queue with "
                f"arguments: {{{SINGLE_ACTIVE_CONSUMER}: true}}, or spread keys over a super "
                "stream's partitions",
                "warning",
            )
        ]
    return []


def _single_active(queue: Queue) -> bool:
    return queue.arguments.get(SINGLE_ACTIVE_CONSUMER) is True
