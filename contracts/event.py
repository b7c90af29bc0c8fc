"""The base of every event: a frozen, keyword-only msgspec Struct.

A contract names itself on the wire with three class variables:

    class OrderPlaced(Event, frozen=True, kw_only=True):
        __wire_name__ = "OrderPlaced"     # defaults to the class name
        __version__ = 1                   # defaults to 1
        __routing_key__ = "order.placed"  # required: <domain>.<fact>, lower case

Class variables are not fields, so they never appear in the JSON body.
Subclasses repeat `frozen=True, kw_only=True`: msgspec applies `kw_only` only
to the fields of the class that sets it, and type checkers following PEP 681
do not inherit `frozen` (msgspec issue #657).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import msgspec

_ROUTING_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base for every contract. Subclasses declare `__routing_key__`."""

    __wire_name__: ClassVar[str]
    __version__: ClassVar[int] = 1
    __routing_key__: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__wire_name__" not in cls.__dict__:
            cls.__wire_name__ = cls.__name__
        key = getattr(cls, "__routing_key__", None)
        if key is None or not _ROUTING_KEY.match(key):
            raise TypeError(
                f"{cls.__name__}.__routing_key__ must be dotted lower case "
                f"like 'order.placed', got {key!r}"
            )
        if not isinstance(cls.__version__, int) or cls.__version__ < 1:
            raise TypeError(f"{cls.__name__}.__version__ must be a positive int")


def describe(event_type: type[Event]) -> str:
    """`OrderPlaced v1 (order.placed)`: how the CLI and errors name a contract."""
    return f"{event_type.__wire_name__} v{event_type.__version__} ({event_type.__routing_key__})"
