"""Desired vs live vs last applied → the changes `apply` would make. Pure: no I/O.

Three inputs tell apart what two cannot: the file (desired), the broker
(live), and the record of what fleet last applied. An object missing from the
broker is *created* if fleet never applied it, and has *drifted* (deleted by
hand) if it did.

    kind        declared  on broker            in record            apply
    create      yes       no                   no                   declares it
    change      yes       differs              differs from file    declares (recreate if needed)
    drift       yes       no, or differs       same as file         declares (recreate if needed)
    unmanaged   no        yes                  -                    leaves it alone
    remove      no        yes (a binding)      yes                  unbinds it

RabbitMQ cannot change a queue's or exchange's type, durability or arguments
in place, so a `change` or `drift` of an existing one needs a recreate.

Broker users (`access.users`) follow the same table, all in place: a user
fleet made that the file no longer has is a `remove` (apply revokes its
permissions on the vhost). A user's password is checked against the broker's
hash when the caller knows it; a different one is a `change`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypeVar

import msgspec

from topology.grants import user_differences
from topology.names import RECORD_QUEUE, password_variable
from topology.passwords import password_matches
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources, UserDecl
from topology.streams import RETENTION_ARGUMENTS

ChangeKind = Literal["create", "change", "drift", "unmanaged", "remove"]
Resource: TypeAlias = ExchangeDecl | QueueDecl | BindingDecl | UserDecl

SYMBOLS: dict[ChangeKind, str] = {
    "create": "+",
    "change": "~",
    "drift": "!",
    "unmanaged": "?",
    "remove": "-",
}
NO_CHANGES = "No changes: the broker matches the topology."
ABSENT = "absent on the broker: deleted by hand since the last apply"
PASSWORD_DIFFERS = "password: the broker's is not the one given"
REVOKED = (
    "no longer in the topology file: apply revokes its permissions on this vhost "
    "(the user itself is left: users are global)"
)

_PLANNED: dict[ChangeKind, str] = {
    "create": "to create",
    "change": "to change",
    "drift": "drifted",
    "remove": "to remove",
}
#: Why fleet does not change a stream's retention itself: redeclaring cannot, and
#: a recreate deletes the log it is meant to keep.
STREAM_RETENTION_NOTE = (
    "a stream's retention cannot change in place: --recreate deletes its log; to keep "
    "it, set a RabbitMQ policy (max-age, max-length-bytes, stream-max-segment-size-bytes) "
    "on it instead"
)
_MISSING: Any = object()
_Named = TypeVar("_Named", ExchangeDecl, QueueDecl)


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One difference between the broker and the topology.

    Attributes:
        kind: create, change, drift, unmanaged or remove (see the module docstring).
        resource: what the file declares (create, change, drift) or what the
            broker holds (unmanaged, remove).
        differences: one line each, broker value → file value
            (``x-delivery-limit: 10 → 20``), or a note.
        in_place: False when RabbitMQ needs the object deleted and declared again.
    """

    kind: ChangeKind
    resource: Resource
    differences: list[str] = []
    in_place: bool = True

    @property
    def pending(self) -> bool:
        """Whether `apply` acts on it (everything but unmanaged objects)."""
        return self.kind != "unmanaged"

    @property
    def title(self) -> str:
        """``~ queue payments (quorum)``: the symbol of its kind and the object."""
        return f"{SYMBOLS[self.kind]} {_describe(self.resource)}"

    @property
    def headline(self) -> str:
        """``~ queue payments (quorum): needs --recreate``: the title, and whether it can be
        made in place."""
        return self.title if self.in_place else f"{self.title}: needs --recreate"

    def render(self) -> str:
        """The headline, then each difference indented."""
        return "\n".join([self.headline, *(f"    {d}" for d in self.differences)])


class Plan(msgspec.Struct, frozen=True):
    """Every change, in the order apply makes them: exchanges, queues, bindings, users."""

    changes: list[Change] = []

    @property
    def pending(self) -> list[Change]:
        """The changes `apply` would make; empty when the broker matches the file."""
        return [c for c in self.changes if c.pending]

    @property
    def unsafe(self) -> list[Change]:
        """Pending changes that need their object deleted and declared again."""
        return [c for c in self.pending if not c.in_place]

    def count(self, kind: ChangeKind) -> int:
        """How many changes are of this kind."""
        return sum(1 for c in self.changes if c.kind == kind)

    def render(self) -> str:
        """The plan as `fleet topology plan` prints it: one entry per change, then a summary."""
        return "\n".join([*(c.render() for c in self.changes), self.summary()])

    def summary(self) -> str:
        """``Plan: 2 to create, 1 to remove.``, or NO_CHANGES."""
        unmanaged = self.count("unmanaged")
        aside = (
            f" {unmanaged} unmanaged object{'s' if unmanaged != 1 else ''} left alone."
            if unmanaged
            else ""
        )
        if not self.pending:
            return NO_CHANGES + aside
        parts = [
            f"{self.count(kind)} {label}" for kind, label in _PLANNED.items() if self.count(kind)
        ]
        recreate = f" {len(self.unsafe)} need --recreate." if self.unsafe else ""
        return f"Plan: {', '.join(parts)}.{recreate}{aside}"


def plan(
    desired: Resources,
    live: Resources,
    record: Resources | None,
    passwords: Mapping[str, str] | None = None,
) -> Plan:
    """What it takes to make `live` match `desired`, knowing what was last applied.

    Args:
        desired: what the topology file expands to.
        live: what the broker holds now (its users: those of `desired` and the record).
        record: what fleet last applied there, or None if it never did.
        passwords: the users' passwords, where known; each is checked against the
            broker's hash, and a user to create without one gets a note saying so.
    """
    return Plan(
        [
            *_named(
                desired.exchanges,
                live.exchanges,
                record.exchanges if record else [],
                _exchange_differences,
                "an exchange",
            ),
            *_named(
                desired.queues,
                live.queues,
                record.queues if record else [],
                _queue_differences,
                "a queue",
            ),
            *_bindings(desired.bindings, live.bindings, record.bindings if record else []),
            *_users(desired.users, live.users, record.users if record else [], passwords),
        ]
    )


def _named(
    desired: Sequence[_Named],
    live: Sequence[_Named],
    record: Sequence[_Named],
    differences: Callable[[_Named, _Named], list[str]],
    what: str,
) -> list[Change]:
    on_broker = {x.name: x for x in live}
    applied = {x.name: x for x in record}
    changes: list[Change] = []
    for want in sorted(desired, key=lambda x: x.name):
        have = on_broker.get(want.name)
        before = applied.get(want.name)
        if have is None:
            changes.append(_missing(want, applied=before is not None))
            continue
        diffs = differences(have, want)
        if diffs:
            unchanged_file = before is not None and not differences(before, want)
            kind: ChangeKind = "drift" if unchanged_file else "change"
            changes.append(Change(kind=kind, resource=want, differences=diffs, in_place=False))
    declared = {x.name for x in desired}
    for have in sorted(live, key=lambda x: x.name):
        if have.name in declared or _ignored(have.name):
            continue
        note = (
            [f"no longer in the topology file; apply never deletes {what}: delete it by hand"]
            if have.name in applied
            else []
        )
        changes.append(Change(kind="unmanaged", resource=have, differences=note))
    return changes


def _bindings(
    desired: Sequence[BindingDecl], live: Sequence[BindingDecl], record: Sequence[BindingDecl]
) -> list[Change]:
    declared = {_binding_key(b) for b in desired}
    on_broker = {_binding_key(b) for b in live}
    applied = {_binding_key(b) for b in record}
    changes: list[Change] = []
    for want in sorted(desired, key=_binding_order):
        key = _binding_key(want)
        if key not in on_broker:
            changes.append(_missing(want, applied=key in applied))
    for have in sorted(live, key=_binding_order):
        key = _binding_key(have)
        if key in declared or _ignored(have.source) or _ignored(have.destination):
            continue
        changes.append(Change(kind="remove" if key in applied else "unmanaged", resource=have))
    return changes


def _users(
    desired: Sequence[UserDecl],
    live: Sequence[UserDecl],
    record: Sequence[UserDecl],
    passwords: Mapping[str, str] | None,
) -> list[Change]:
    on_broker = {u.name: u for u in live}
    applied = {u.name: u for u in record}
    changes: list[Change] = []
    for want in sorted(desired, key=lambda u: u.name):
        have = on_broker.get(want.name)
        before = applied.get(want.name)
        if have is None:
            missing = _missing(want, applied=before is not None)
            if passwords is not None and want.name not in passwords:
                missing = msgspec.structs.replace(
                    missing, differences=[*missing.differences, no_password(want.name)]
                )
            changes.append(missing)
            continue
        diffs = user_differences(have, want)
        password = (passwords or {}).get(want.name)
        if (
            password is not None
            and password_matches(password, have.password_hash, have.hashing_algorithm) is False
        ):
            diffs.append(PASSWORD_DIFFERS)
        if diffs:
            unchanged_file = before is not None and not user_differences(before, want)
            drifted = unchanged_file and PASSWORD_DIFFERS not in diffs
            changes.append(
                Change(kind="drift" if drifted else "change", resource=want, differences=diffs)
            )
    for name, before in sorted(applied.items()):
        have = on_broker.get(name)
        if name not in {u.name for u in desired} and have is not None and _grants(have):
            changes.append(Change(kind="remove", resource=before, differences=[REVOKED]))
    return changes


def no_password(user: str) -> str:
    """The note on a user to create whose password is not known."""
    return f"no password: set {password_variable(user)} or list it in --passwords-file"


def _grants(user: UserDecl) -> bool:
    """Whether the user may do anything on the vhost."""
    return user.permissions is not None or bool(user.topics)


def _missing(want: Resource, *, applied: bool) -> Change:
    """A declared object the broker lacks: new, or deleted by hand if fleet applied it."""
    if applied:
        return Change(kind="drift", resource=want, differences=[ABSENT])
    return Change(kind="create", resource=want)


def _ignored(name: str) -> bool:
    """RabbitMQ's own objects and fleet's record are never shown."""
    return not name or name.startswith("amq.") or name == RECORD_QUEUE


def _exchange_differences(old: ExchangeDecl, new: ExchangeDecl) -> list[str]:
    return [
        *_field("type", old.type, new.type),
        *_field("durable", old.durable, new.durable),
        *_field("auto_delete", old.auto_delete, new.auto_delete),
        *_field("internal", old.internal, new.internal),
        *_argument_differences(old.arguments, new.arguments),
    ]


def _queue_differences(old: QueueDecl, new: QueueDecl) -> list[str]:
    differences = [
        *_field("type", old.type, new.type),
        *_field("durable", old.durable, new.durable),
        *_argument_differences(old.arguments, new.arguments),
    ]
    retention = any(d.partition(":")[0] in RETENTION_ARGUMENTS for d in differences)
    if differences and retention and old.type == new.type == "stream":
        differences.append(STREAM_RETENTION_NOTE)
    return differences


def _argument_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [
        line
        for key in sorted(old.keys() | new.keys())
        for line in _field(key, old.get(key, _MISSING), new.get(key, _MISSING))
    ]


def _field(name: str, old: Any, new: Any) -> list[str]:
    if _normal(old) == _normal(new):
        return []
    return [f"{name}: {_show(old)} → {_show(new)}"]


def _normal(value: Any) -> Hashable:
    """A hashable form in which numerically equal numbers are equal (the API returns
    ints where a file may say 10.0), but booleans stay apart from 0 and 1."""
    if value is _MISSING:
        return ("missing",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and value.is_integer():
        return ("number", int(value))
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, dict):
        return ("map", tuple(sorted((str(k), _normal(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return ("list", tuple(_normal(v) for v in value))
    if isinstance(value, str):
        return ("text", value)
    return ("other", repr(value))


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(unset)"
    if isinstance(value, str):
        return value if value else "''"
    return msgspec.json.encode(value).decode()


def _binding_key(binding: BindingDecl) -> Hashable:
    return (binding.source, binding.destination, binding.routing_key, _normal(binding.arguments))


def _binding_order(binding: BindingDecl) -> tuple[str, str, str]:
    return (binding.source, binding.destination, binding.routing_key)


def _describe(resource: Resource) -> str:
    if isinstance(resource, BindingDecl):
        return resource.key
    if isinstance(resource, UserDecl):
        return f"{resource.key} ({resource.process})" if resource.process else resource.key
    return f"{resource.key} ({resource.type})"
