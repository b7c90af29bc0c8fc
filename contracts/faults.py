"""Fault events: a message parked in a dead-letter queue, announced so a
choreography can compensate instead of half-finishing.

When a worker's topology entry names a `faults` exchange, every message it
parks whose contract it handles is announced there as a `Fault[<name>]`
(MassTransit's ``Fault<T>`` is the model):

    @orders.handles(Fault.of(OrderPlaced))
    async def order_failed(fault: Fault[OrderPlaced], ctx: Context) -> OrderCancelled:
        ...  # fault.message is the parked OrderPlaced (None if it never decoded)

On the wire a fault is an event like any other: `type` ``Fault[OrderPlaced]``,
the original's `version`, routing key ``fault.order.placed``, and a body with
the original's ids, why it was parked, and the original itself.
"""

from __future__ import annotations

import types
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

from contracts.event import Event

E = TypeVar("E", bound=Event)

#: What a fault's routing key starts with: ``fault.`` + the original's.
FAULT_PREFIX = "fault."


class Fault(Event, Generic[E], frozen=True, kw_only=True):
    """A message of contract `E` was parked; `Fault.of(E)` is the concrete contract."""

    # The generic base is never sent; each `Fault.of(E)` declares its own key.
    __routing_key__ = "fleet.fault"
    #: The contract the fault is about (set on each `Fault.of(E)`).
    original: ClassVar[type[Event]]

    #: The parked message's wire name, version and ids.
    message_type: str
    message_version: int
    message_id: str
    correlation_id: str
    #: Why it was parked: decode | permanent | retries-exhausted | crash-loop | internal.
    reason: str
    error_type: str
    error: str
    #: Who parked it, and where it waits (``<queue>.dead``).
    worker: str
    queue: str
    #: The parked message, when it decoded (None for a decode error).
    message: E | None = None

    @classmethod
    def of(cls, event_type: type[E]) -> type[Fault[E]]:
        """The fault contract of `event_type` (the same class on every call)."""
        return _fault_of(event_type)


@cache
def _fault_of(event_type: type[Event]) -> type[Fault[Any]]:
    def namespace(ns: dict[str, Any]) -> None:
        ns["__wire_name__"] = f"Fault[{event_type.__wire_name__}]"
        ns["__version__"] = event_type.__version__
        ns["__routing_key__"] = FAULT_PREFIX + event_type.__routing_key__
        ns["__qualname__"] = f"Fault[{event_type.__qualname__}]"
        ns["__module__"] = event_type.__module__
        ns["__doc__"] = f"A {event_type.__wire_name__} was parked (see contracts.faults)."
        ns["original"] = event_type

    fault: type[Fault[Any]] = types.new_class(
        f"{event_type.__name__}Fault",
        (Fault[event_type],),  # type: ignore[valid-type]
        {"frozen": True, "kw_only": True},
        namespace,
    )
    return fault


def is_fault(event_type: type[Event]) -> bool:
    """Whether a contract is a `Fault.of(...)`."""
    return issubclass(event_type, Fault) and "original" in event_type.__dict__
