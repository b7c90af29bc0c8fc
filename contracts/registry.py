"""Wire name and version → contract type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from contracts.errors import DuplicateContract, UnknownEventType
from contracts.event import Event

E = TypeVar("E", bound=type[Event])


class Registry:
    """Maps (wire name, version) to an Event type; also answers by routing key."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], type[Event]] = {}

    def register(self, event_type: E) -> E:
        """Add a contract; usable as a class decorator.

        Raises:
            DuplicateContract: another type already holds the name and version.
        """
        key = (event_type.__wire_name__, event_type.__version__)
        held = self._by_key.get(key)
        if held is not None and held is not event_type:
            raise DuplicateContract(
                f"{key[0]} v{key[1]} is already registered by {held.__module__}.{held.__qualname__}"
            )
        self._by_key[key] = event_type
        return event_type

    def adopt(self, other: Registry) -> None:
        """Take every contract of `other`, in place of any held under the same name and
        version: the process-wide registry takes on the contracts of the project a
        command works on (`workers.project`), which were checked for duplicates there."""
        self._by_key.update(other._by_key)

    def lookup(self, name: str, version: int = 1) -> type[Event]:
        """The type for a wire name and version.

        Raises:
            UnknownEventType: nothing is registered under that name and version.
        """
        try:
            return self._by_key[(name, version)]
        except KeyError:
            known = sorted({n for n, _ in self._by_key})
            raise UnknownEventType(
                name, version if any(n == name for n, _ in self._by_key) else None, known
            ) from None

    def by_routing_key(self, routing_key: str) -> type[Event] | None:
        """The newest contract that declares this routing key, if exactly one name does."""
        matches = [t for t in self._by_key.values() if t.__routing_key__ == routing_key]
        names = {t.__wire_name__ for t in matches}
        if len(names) != 1:
            return None
        return max(matches, key=lambda t: t.__version__)

    def __iter__(self) -> Iterator[type[Event]]:
        return iter(sorted(self._by_key.values(), key=lambda t: (t.__wire_name__, t.__version__)))

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_key.values()


#: The process-wide registry the CLI and the runtime read. Contract modules add
#: themselves to it on import with `@register`.
default_registry = Registry()
register = default_registry.register
lookup = default_registry.lookup
