"""Contracts that evolve: several versions side by side, and the typed functions
that carry a message from one version to the next.

    class OrderPlacedV1(Event, frozen=True, kw_only=True):
        __wire_name__ = "OrderPlaced"
        __routing_key__ = "order.placed"
        order_id: str

    class OrderPlaced(Event, frozen=True, kw_only=True):       # version 2
        __version__ = 2
        __routing_key__ = "order.placed"
        order_id: str
        source: str = "api"

    @upcaster
    def order_placed_v2(old: OrderPlacedV1) -> OrderPlaced:
        return OrderPlaced(order_id=old.order_id)

A worker that handles only v2 then receives v1 messages upcast through the
chain (v1 → v2 → … → the version it handles): its handler sees v2 alone. A
`@downcaster` (vN+1 → vN) lets a worker that handles only an older version
read newer messages; without one, such a message is parked as
`version-unsupported`. Each function is a plain typed function of one
contract to the same contract's next (or previous) version; the decorator
reads the two from its annotations and checks them, when the module is
imported. The functions are registered with the contracts (per wire name and
version), in the process that imports them: the project's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar, get_type_hints

from contracts.errors import ContractError
from contracts.event import Event

F = TypeVar("F", bound=Callable[..., Event])


class EvolutionError(ContractError, TypeError):
    """An upcaster or downcaster is not a function of a contract to its neighbour version."""


@dataclass(frozen=True)
class Step:
    """One function that carries a message one version up (or down)."""

    source: type[Event]
    target: type[Event]
    function: Callable[[Any], Event]

    def __call__(self, event: Event) -> Event:
        result = self.function(event)
        if not isinstance(result, self.target):
            raise TypeError(
                f"{self.function.__qualname__} returned {type(result).__name__}, "
                f"not {self.target.__name__}"
            )
        return result


class Evolution:
    """The upcasters and downcasters registered, by wire name and source version."""

    def __init__(self) -> None:
        self._up: dict[tuple[str, int], Step] = {}
        self._down: dict[tuple[str, int], Step] = {}

    def upcaster(self, function: F) -> F:
        """Register `function` (vN → vN+1 of one contract); usable as a decorator.

        Raises:
            EvolutionError: its annotations are not a contract and its next version.
        """
        step = _step(function, +1)
        self._up[(step.source.__wire_name__, step.source.__version__)] = step
        return function

    def downcaster(self, function: F) -> F:
        """Register `function` (vN+1 → vN of one contract); usable as a decorator.

        Raises:
            EvolutionError: its annotations are not a contract and its previous version.
        """
        step = _step(function, -1)
        self._down[(step.source.__wire_name__, step.source.__version__)] = step
        return function

    def up_from(self, name: str, version: int) -> Step | None:
        """The upcaster from `name` v`version`, if one is registered."""
        return self._up.get((name, version))

    def down_from(self, name: str, version: int) -> Step | None:
        """The downcaster from `name` v`version`, if one is registered."""
        return self._down.get((name, version))

    def path(self, name: str, version: int, to: int) -> list[Step] | None:
        """The steps from `name` v`version` to v`to` (up or down), or None when the
        chain breaks somewhere; [] when they are the same version."""
        steps: list[Step] = []
        lookup = self.up_from if to > version else self.down_from
        current = version
        while current != to:
            step = lookup(name, current)
            if step is None:
                return None
            steps.append(step)
            current = step.target.__version__
        return steps

    def route(self, name: str, version: int, handled: list[int]) -> list[Step] | None:
        """The steps from v`version` to the nearest of the `handled` versions it reaches:
        upcasting to the lowest newer one first, else downcasting to the highest older."""
        newer = sorted(v for v in handled if v > version)
        older = sorted((v for v in handled if v < version), reverse=True)
        for target in (*newer, *older):
            steps = self.path(name, version, target)
            if steps is not None:
                return steps
        return None

    def sources(self, target: type[Event]) -> list[type[Event]]:
        """Every contract a message can be carried to `target` from (its other versions
        joined to it by a chain of steps)."""
        found: list[type[Event]] = []
        for steps in (self._up, self._down):
            for step in steps.values():
                if step.source.__wire_name__ == target.__wire_name__ and step.source not in found:
                    found.append(step.source)
        return [s for s in found if s is not target]


def _step(function: Callable[..., Event], direction: int) -> Step:
    kind = "upcaster" if direction > 0 else "downcaster"
    try:
        hints = get_type_hints(function)
    except Exception as error:
        raise EvolutionError(
            f"{kind} {function.__qualname__}: cannot read its annotations: {error}"
        ) from None
    parameters = list(inspect.signature(function).parameters)
    source = hints.get(parameters[0]) if len(parameters) == 1 else None
    target = hints.get("return")
    if not (_is_contract(source) and _is_contract(target)):
        raise EvolutionError(
            f"{kind} {function.__qualname__} must take one contract and return one: "
            f"def f(old: OrderPlacedV1) -> OrderPlaced"
        )
    return _checked(kind, function, source, target, direction)


def _checked(
    kind: str,
    function: Callable[..., Event],
    source: type[Event],
    target: type[Event],
    direction: int,
) -> Step:
    if source.__wire_name__ != target.__wire_name__:
        raise EvolutionError(
            f"{kind} {function.__qualname__} turns {source.__wire_name__} into "
            f"{target.__wire_name__}: both must be versions of one contract"
        )
    if target.__version__ != source.__version__ + direction:
        raise EvolutionError(
            f"{kind} {function.__qualname__} goes from v{source.__version__} to "
            f"v{target.__version__}: an {kind} goes one version "
            f"{'up' if direction > 0 else 'down'} (v{source.__version__ + direction})"
        )
    return Step(source, target, function)


def _is_contract(value: object) -> TypeGuard[type[Event]]:
    return isinstance(value, type) and issubclass(value, Event) and value is not Event


#: The process-wide upcasters and downcasters, filled on import of the modules
#: that define them (the project's contracts).
default_evolution = Evolution()
upcaster = default_evolution.upcaster
downcaster = default_evolution.downcaster
