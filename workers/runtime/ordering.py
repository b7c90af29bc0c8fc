"""Per-key order inside one consumer (`order_by` in the topology): deliveries with the
same key run one after another, in the order they arrived; other keys do not wait.

Each delivery takes its place in its key's line the moment it arrives (before any
wait: rate limits, slots), and waits, holding no slot, for the one before it to be
settled (acked, or its retry or dead-letter copy confirmed). A waiting delivery is
unfinished, so no multiple ack covers it (`acks.AckBatcher`).

A delivery whose key cannot be read (the field or header is absent, null, empty, or
neither text nor a whole number; a body that is no JSON object) takes no place in any
line: it runs like on a worker without `order_by`. A message sent to a retry tier
leaves its line when its copy is confirmed: the key's later messages go ahead of it
(docs/concepts/flow-control.md: per-key order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

import msgspec
from aiormq.abc import DeliveredMessage

from topology.model import WorkerSpec
from topology.order import OrderBy, parse_order_by
from topology.problems import Problem
from workers.worker import Worker

#: A delivery's key, or None when it has none.
KeyReader = Callable[[DeliveredMessage], str | None]


def key_reader(order: OrderBy) -> KeyReader:
    """Reads the key `order` names from a delivery; never raises."""
    return _header_reader(order.name) if order.source == "header" else _field_reader(order.name)


def _field_reader(name: str) -> KeyReader:
    # A Struct of the one field: msgspec skips the body's other fields without
    # building them, and refuses a value that is neither text nor an integer.
    shape = msgspec.defstruct(
        "OrderKey", [("value", str | int | None, None)], rename={"value": name}
    )
    decode: Callable[[bytes], Any] = msgspec.json.Decoder(shape).decode

    def read(message: DeliveredMessage) -> str | None:
        try:
            value = decode(message.body).value
        except Exception:  # no JSON object, or a value of another type: no key
            return None
        return _key(value)

    return read


def _header_reader(name: str) -> KeyReader:
    def read(message: DeliveredMessage) -> str | None:
        headers = message.header.properties.headers
        if not isinstance(headers, dict):
            return None
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return _key(value)

    return read


def _key(value: Any) -> str | None:
    """Text as it is and whole numbers as their digits (42 and "42" are one key);
    anything else, and empty text, is no key."""
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None


class KeyLines:
    """The line of deliveries of each key that has one in flight.

    Args:
        read: a delivery's key.
    """

    __slots__ = ("_read", "_tails", "waiting")

    def __init__(self, read: KeyReader):
        self._read = read
        #: Per key, the future of its last delivery, done once that one is settled.
        self._tails: dict[str, asyncio.Future[None]] = {}
        #: Deliveries waiting for the one before them.
        self.waiting = 0

    @classmethod
    def of(cls, spec: WorkerSpec) -> KeyLines | None:
        """The lines `spec.order_by` asks for; None without one (the plain path)."""
        if spec.order_by is None:
            return None
        return cls(key_reader(parse_order_by(spec.order_by)))

    @property
    def keys(self) -> int:
        """Keys with a delivery in flight."""
        return len(self._tails)

    def join(self, message: DeliveredMessage) -> Turn | None:
        """Put the delivery at the end of its key's line; None when it has no key.

        Synchronous, so deliveries join in the order they arrive."""
        key = self._read(message)
        if key is None:
            return None
        before = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        return Turn(self, key, before, mine)

    def _leave(self, key: str, mine: asyncio.Future[None]) -> None:
        if self._tails.get(key) is mine:
            del self._tails[key]


class Turn:
    """One delivery's place in its key's line: ``async with turn`` waits for the one
    before it, and hands the line on at exit."""

    __slots__ = ("_before", "_key", "_lines", "_mine")

    def __init__(
        self,
        lines: KeyLines,
        key: str,
        before: asyncio.Future[None] | None,
        mine: asyncio.Future[None],
    ):
        self._lines = lines
        self._key = key
        self._before = before
        self._mine = mine

    async def __aenter__(self) -> None:
        before = self._before
        if before is None or before.done():
            return
        self._lines.waiting += 1
        try:
            # Shielded: cancelling this wait must not mark the one before as done.
            await asyncio.shield(before)
        except BaseException:
            self._hand_on()
            raise
        finally:
            self._lines.waiting -= 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hand_on()

    def _hand_on(self) -> None:
        """Let the next of the key go: now, or (this one gave up waiting, cancelled)
        once the one before it is done, so two of a key never run at once."""
        before = self._before
        self._before = None
        if before is None or before.done():
            self._release()
        else:
            before.add_done_callback(lambda _: self._release())

    def _release(self) -> None:
        mine = self._mine
        if not mine.done():
            mine.set_result(None)
        self._lines._leave(self._key, mine)


def order_problem(name: str, spec: WorkerSpec, worker: Worker) -> Problem | None:
    """What the worker's code makes wrong with its `order_by` (checked at worker start
    and by `fleet topology check`): no handled contract has the field, or a handler
    takes its events in batches."""
    if spec.order_by is None:
        return None
    path = f"workers.{name}.order_by"
    # `batch` is set on the handlers of Worker.handles_batch.
    batched = [h for h in worker.handlers if getattr(h, "batch", None) is not None]
    if batched:
        names = ", ".join(sorted(h.event_type.__wire_name__ for h in batched))
        return Problem(
            path,
            f"the handler of {names} takes its events in batches (handles_batch), which "
            "mixes keys in one call: per-key order is not kept for batches; drop order_by "
            "or handle them one by one",
        )
    order = parse_order_by(spec.order_by)
    if order.source == "header" or not worker.handlers:
        return None
    if unkeyed_contracts(spec, worker) == sorted(_contracts(worker)):
        fields = sorted({f for h in worker.handlers for f in h.event_type.__struct_fields__})
        return Problem(
            path,
            f"no contract worker {name!r} handles has a field {order.name!r} "
            f"(their fields: {', '.join(fields)}); for a header write header:{order.name}",
        )
    return None


def unkeyed_contracts(spec: WorkerSpec, worker: Worker) -> list[str]:
    """The handled contracts (`Name vN`) without the `order_by` field: their messages
    run unordered."""
    if spec.order_by is None:
        return []
    order = parse_order_by(spec.order_by)
    if order.source == "header":
        return []
    return sorted(
        _describe(h.event_type)
        for h in worker.handlers
        if order.name not in h.event_type.__struct_fields__
    )


def _contracts(worker: Worker) -> list[str]:
    return [_describe(h.event_type) for h in worker.handlers]


def _describe(event_type: type[Any]) -> str:
    return f"{event_type.__wire_name__} v{event_type.__version__}"
