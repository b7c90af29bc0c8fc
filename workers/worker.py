"""The declaration API: a Worker and the handlers it registers.

    inventory = Worker("inventory")

    @inventory.handles(OrderPlaced)
    async def reserve(event: OrderPlaced, ctx: Context) -> StockReserved | StockRejected:
        ...

What a handler returns (an event, a list of events, or None) is published as
follow-on events by the runtime, which owns acks, retries, dedupe and confirms.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeAlias, TypeVar, get_args, get_origin

from contracts import Event
from topology import EventRoute, WorkerWiring
from workers.context import Context

E = TypeVar("E", bound=Event)
Emitted: TypeAlias = Event | Sequence[Event] | None
Handler: TypeAlias = Callable[[E, Context], Awaitable[Emitted]]
BatchHandler: TypeAlias = Callable[[list[E], Context], Awaitable[Emitted]]
Hook: TypeAlias = Callable[["Resources"], Awaitable[None]]


class Resources:
    """What a worker's startup and shutdown hooks receive.

    Attributes:
        name: the worker's name.
        pool: the PostgreSQL pool (asyncpg) when the worker has a database, else
            None: hooks create the worker's own tables through it.
    """

    __slots__ = ("name", "pool")

    def __init__(self, name: str, pool: Any = None):
        self.name = name
        self.pool = pool


class Batching(Generic[E]):
    """How a batch handler's deliveries are gathered (`Worker.handles_batch`)."""

    __slots__ = ("function", "max_size", "max_wait")

    def __init__(self, function: BatchHandler[E], max_size: int, max_wait: float):
        self.function = function
        self.max_size = max_size
        #: Seconds from a batch's first delivery until it runs unfilled.
        self.max_wait = max_wait


class HandlerSpec(Generic[E]):
    """One registered handler: the event it takes, the function, what it may emit.

    A batch handler's `function` calls it with a one-element list (its single-message
    path: crash suspects, and the messages of a batch that failed); `batch` says how
    its deliveries are gathered. `batch` is None for every other handler.
    """

    __slots__ = ("batch", "emits", "event_type", "function")

    def __init__(
        self,
        event_type: type[E],
        function: Handler[E],
        emits: tuple[type[Event], ...],
        batch: Batching[E] | None = None,
    ):
        self.event_type = event_type
        self.function = function
        self.emits = emits
        self.batch = batch

    def __repr__(self) -> str:
        return f"<handler {self.function.__qualname__} for {self.event_type.__wire_name__}>"


class Worker:
    """A named set of handlers, one per event type.

    Args:
        name: the worker's name in the topology file.
        database: its handlers keep state through ``ctx.db``: the worker refuses
            to start without a database, saying so, rather than fail every message.
    """

    def __init__(self, name: str, *, database: bool = False):
        self.name = name
        self.needs_database = database
        self._handlers: dict[type[Event], HandlerSpec[Any]] = {}
        self._by_wire: dict[tuple[str, int], HandlerSpec[Any]] = {}
        self._by_routing_key: dict[str, HandlerSpec[Any]] = {}
        #: wire name → version → handler: looked up per delivery of another version.
        self._versions: dict[str, dict[int, HandlerSpec[Any]]] = {}
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []

    def handles(
        self, event_type: type[E], *, emits: Sequence[type[Event]] | None = None
    ) -> Callable[[Handler[E]], Handler[E]]:
        """Register the decorated coroutine function as the handler of `event_type`.

        Args:
            event_type: the contract the handler takes.
            emits: the events it may return; read from the return annotation when omitted.

        Raises:
            ValueError: the event type already has a handler in this worker.
        """

        def register(function: Handler[E]) -> Handler[E]:
            emitted = tuple(emits) if emits is not None else _emitted_types(function)
            self._register(HandlerSpec(event_type, function, emitted))
            return function

        return register

    def handles_batch(
        self,
        event_type: type[E],
        *,
        max_size: int = 500,
        max_wait: timedelta | float = timedelta(milliseconds=200),
        emits: Sequence[type[Event]] | None = None,
    ) -> Callable[[BatchHandler[E]], BatchHandler[E]]:
        """Register the decorated coroutine function as the batch handler of `event_type`:
        it receives a list of up to `max_size` events, gathered for at most `max_wait`
        from the first (docs/concepts/flow-control.md, "Batch handlers").

        Args:
            event_type: the contract the handler takes.
            max_size: events per call at most; the worker's prefetch must be at least this.
            max_wait: how long a batch waits to fill once its first event arrived
                (a timedelta, or seconds).
            emits: the events it may return; read from the return annotation when omitted.

        Raises:
            ValueError: max_size below 1, max_wait not above zero, or the event type
                already has a handler in this worker.
        """
        wait = max_wait.total_seconds() if isinstance(max_wait, timedelta) else float(max_wait)
        where = f"worker {self.name!r} handles_batch({event_type.__name__})"
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"{where}: max_size must be a whole number of at least 1, got {max_size!r}"
            )
        if not wait > 0:
            raise ValueError(f"{where}: max_wait must be above zero, got {max_wait!r}")

        def register(function: BatchHandler[E]) -> BatchHandler[E]:
            emitted = tuple(emits) if emits is not None else _emitted_types(function)

            async def one(event: E, ctx: Context) -> Emitted:
                return await function([event], ctx)

            one.__qualname__ = function.__qualname__
            batching = Batching(function, max_size, wait)
            self._register(HandlerSpec(event_type, one, emitted, batching))
            return function

        return register

    def _register(self, spec: HandlerSpec[Any]) -> None:
        event_type = spec.event_type
        if event_type in self._handlers:
            held = self._handlers[event_type].function.__qualname__
            raise ValueError(
                f"worker {self.name!r} already handles {event_type.__wire_name__} with {held}"
            )
        self._handlers[event_type] = spec
        self._by_wire[(event_type.__wire_name__, event_type.__version__)] = spec
        self._versions.setdefault(event_type.__wire_name__, {})[event_type.__version__] = spec
        self._by_routing_key.setdefault(event_type.__routing_key__, spec)

    @property
    def batches(self) -> list[HandlerSpec[Any]]:
        """The handlers that take their events in batches."""
        return [spec for spec in self._handlers.values() if spec.batch is not None]

    def on_startup(self, hook: Hook) -> Hook:
        """Register ``async def hook(resources)``, run once before consuming starts
        (create tables through ``resources.pool``, open clients)."""
        self.startup_hooks.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Register ``async def hook(resources)``, run once after consuming stopped and
        in-flight work finished."""
        self.shutdown_hooks.append(hook)
        return hook

    @property
    def handlers(self) -> list[HandlerSpec[Any]]:
        return list(self._handlers.values())

    def handler_for(self, wire_name: str, version: int) -> HandlerSpec[Any] | None:
        """The handler for a wire name and version, if this worker has one."""
        return self._by_wire.get((wire_name, version))

    def versions_handled(self, wire_name: str) -> dict[int, HandlerSpec[Any]]:
        """The handlers of every version of one contract this worker takes, by version."""
        return dict(self._versions.get(wire_name, {}))

    def handles_contract(self, wire_name: str) -> bool:
        """Whether this worker takes some version of the contract (no copy made)."""
        return wire_name in self._versions

    def handler_for_routing_key(self, routing_key: str) -> HandlerSpec[Any] | None:
        """The handler whose event declares this routing key (for messages without `type`)."""
        return self._by_routing_key.get(routing_key)

    def wiring(self) -> WorkerWiring:
        """What this worker handles and emits, for `topology check`."""
        emitted = {t: None for spec in self._handlers.values() for t in spec.emits}
        return WorkerWiring(
            handles=[_route(t) for t in self._handlers],
            emits=[_route(t) for t in emitted],
        )

    def __repr__(self) -> str:
        return f"<Worker {self.name} handles {[t.__wire_name__ for t in self._handlers]}>"


def _route(event_type: type[Event]) -> EventRoute:
    return EventRoute(
        name=event_type.__wire_name__,
        routing_key=event_type.__routing_key__,
        version=event_type.__version__,
    )


def _is_sequence(origin: object) -> bool:
    return isinstance(origin, type) and issubclass(origin, Sequence)


def _emitted_types(function: Callable[..., Any]) -> tuple[type[Event], ...]:
    """Event types named in a handler's return annotation (unions, lists and Optional unpacked)."""
    try:
        annotation = typing.get_type_hints(function).get("return")
    except (NameError, TypeError):
        return ()
    found: list[type[Event]] = []
    pending = [annotation]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, Event) and tp is not Event:
            found.append(tp)
        elif get_origin(tp) in (typing.Union, types.UnionType) or _is_sequence(get_origin(tp)):
            pending.extend(a for a in get_args(tp) if a is not Ellipsis)
    return tuple(dict.fromkeys(reversed(found)))
