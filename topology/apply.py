"""Make a live broker match the topology: plan, then carry the plan out with aio-pika.

apply declares exchanges, then queues, then bindings; unbinds what the file
dropped; grants the broker users of `access.users` what they need (through the
management API, see `topology.users`); and records what it applied (see
`topology.record`). It never deletes a queue or exchange implicitly: one that
must change in a way RabbitMQ cannot make in place is refused unless the caller
asks to recreate it. A user to create without a password is refused before
anything is changed.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from topology.access import broker_users
from topology.check import WorkerWiring
from topology.errors import (
    BrokerRefused,
    BrokerUnreachable,
    MissingPassword,
    TopologyError,
    UnsafeChange,
)
from topology.expand import expand
from topology.live import read_live
from topology.management import Management, vhost_from
from topology.model import Topology
from topology.names import RECORD_QUEUE, password_variable
from topology.nodes import DEFAULT_AMQP_PORT, DEFAULT_AMQPS_PORT
from topology.plan import ABSENT, Change, ChangeKind, Plan, plan
from topology.record import Record, read_record, write_record
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources, UserDecl
from topology.tls import handshake_problem, tls_files, unreadable_file
from topology.users import carry_out_user

OnChange = Callable[[Change], None]
Confirm = Callable[[list[Change]], bool]

_DONE: dict[ChangeKind, str] = {
    "create": "created",
    "change": "changed",
    "drift": "repaired",
    "remove": "removed",
}


@dataclass(frozen=True)
class ApplyResult:
    """What apply found and what it did.

    Attributes:
        plan: the plan it carried out.
        applied: the changes made, in order.
        declined: True when `confirm` said no; then nothing was changed.
    """

    plan: Plan
    applied: list[Change] = field(default_factory=list)
    declined: bool = False

    def summary(self) -> str:
        """``Applied: 3 created, 1 removed.``, or the plan's "No changes" sentence."""
        if self.declined:
            return "Aborted: nothing was changed."
        if not self.applied:
            return self.plan.summary()
        counts = [
            f"{sum(1 for c in self.applied if c.kind == kind)} {label}"
            for kind, label in _DONE.items()
            if any(c.kind == kind for c in self.applied)
        ]
        return f"Applied: {', '.join(counts)}."


def survey(
    desired: Resources,
    amqp_url: str,
    *,
    management_url: str | None = None,
    passwords: Mapping[str, str] | None = None,
) -> tuple[Plan, Record | None]:
    """The plan for the broker as it is now, and its record. Blocking (HTTP).

    Args:
        desired: what the file expands to, its broker users included.
        amqp_url: the broker; its path is the vhost.
        management_url: the management API, when it is not the AMQP host on port 15672.
        passwords: the users' known passwords, checked against the broker's hashes.

    Raises:
        BrokerUnreachable: the management API cannot be reached or refuses the user.
    """
    with Management.for_broker(amqp_url, management_url) as management:
        record = read_record(management)
        applied = record.resources if record else None
        users = {u.name for u in desired.users} | {u.name for u in (applied or desired).users}
        live = read_live(management, users)
    return plan(desired, live, applied, passwords), record


def desired_resources(
    topology: Topology, wiring: Mapping[str, WorkerWiring] | None = None
) -> Resources:
    """What `topology` expands to, with its broker users when `access.users` is on.

    Raises:
        TopologyError: `access.users` is on and `wiring` is missing a worker.
    """
    resources = expand(topology)
    if topology.access.users:
        wiring = wiring or {}
        missing = [name for name in topology.workers if name not in wiring]
        if missing:
            raise TopologyError(
                f"access.users: the permissions of worker {missing[0]!r} come from its "
                "handlers, and its module could not be imported"
            )
        resources.users = broker_users(topology, wiring)
    return resources


async def apply(
    desired: Topology | Resources,
    amqp_url: str,
    *,
    management_url: str | None = None,
    recreate: bool = False,
    confirm: Confirm | None = None,
    on_change: OnChange | None = None,
    file_sha256: str | None = None,
    wiring: Mapping[str, WorkerWiring] | None = None,
    passwords: Mapping[str, str] | None = None,
) -> ApplyResult:
    """Make the broker's vhost match `desired`, then record what was applied.

    Args:
        desired: the topology, or the resources it expands to.
        amqp_url: the broker; its path is the vhost.
        management_url: the management API, when it is not the AMQP host on port 15672.
        recreate: delete and declare again what cannot change in place; their
            messages (queues) or bindings (exchanges) are lost.
        confirm: asked with the changes that need a recreate before anything
            is touched; answering False changes nothing.
        on_change: called after each change is made.
        file_sha256: the topology file's digest, kept in the record.
        wiring: what each worker's handlers emit, for the users of `access.users`.
        passwords: the broker users' passwords (a user is created only with one).

    Raises:
        MissingPassword: a user to create has no password (nothing is changed).
        UnsafeChange: a change needs a recreate and `recreate` is False (nothing
            is changed), or the broker refused a declaration.
        BrokerUnreachable: the broker or its management API cannot be reached.
        TopologyError: the broker refused an operation for another reason.
    """
    resources = desired_resources(desired, wiring) if isinstance(desired, Topology) else desired
    passwords = passwords or {}
    current, record = await asyncio.to_thread(
        survey, resources, amqp_url, management_url=management_url, passwords=passwords
    )
    _check_passwords(current, passwords)
    unsafe = current.unsafe
    if unsafe and not recreate:
        raise UnsafeChange(_refusal(unsafe))
    if unsafe and confirm is not None and not confirm(unsafe):
        return ApplyResult(current, declined=True)
    stale = record is None or record.resources != resources or record.file_sha256 != file_sha256
    if not current.pending and not stale:
        return ApplyResult(current)
    applied: list[Change] = []
    connection = await _connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for change in current.pending:
            if isinstance(change.resource, UserDecl):
                continue  # after the objects they are granted on (below)
            await _carry_out(channel, change)
            applied.append(change)
            if on_change is not None:
                on_change(change)
        await _rebind_recreated(channel, resources, current)
        users = [c for c in current.pending if isinstance(c.resource, UserDecl)]
        if users:
            await asyncio.to_thread(
                _carry_out_users, amqp_url, management_url, users, passwords, applied, on_change
            )
        now = datetime.now(UTC)
        await _guard(
            f"queue {RECORD_QUEUE!r} (fleet's record of what it applied)",
            write_record(
                channel, Record(resources=resources, applied_at=now, file_sha256=file_sha256)
            ),
        )
    return ApplyResult(current, applied)


def _check_passwords(current: Plan, passwords: Mapping[str, str]) -> None:
    """Refuse, before touching anything, to create users nobody gave a password."""
    missing = [
        c.resource.name
        for c in current.pending
        if isinstance(c.resource, UserDecl)
        and (c.kind == "create" or ABSENT in c.differences)
        and c.resource.name not in passwords
    ]
    if not missing:
        return
    if len(missing) == 1:
        variables = password_variable(missing[0])
        raise MissingPassword(
            f"user {missing[0]!r} has no password: set {variables} or list it in "
            "--passwords-file (nothing was changed)"
        )
    names = ", ".join(repr(m) for m in missing)
    variables = ", ".join(password_variable(m) for m in missing)
    raise MissingPassword(
        f"users {names} have no password: set {variables} or list them in "
        "--passwords-file (nothing was changed)"
    )


def _carry_out_users(
    amqp_url: str,
    management_url: str | None,
    changes: list[Change],
    passwords: Mapping[str, str],
    applied: list[Change],
    on_change: OnChange | None,
) -> None:
    with Management.for_broker(amqp_url, management_url) as management:
        for change in changes:
            carry_out_user(management, change, passwords)
            applied.append(change)
            if on_change is not None:
                on_change(change)


async def _carry_out(channel: AbstractChannel, change: Change) -> None:
    """Carry out a change of an exchange, queue or binding over AMQP."""
    resource = change.resource
    assert not isinstance(resource, UserDecl), "users are granted over HTTP"
    what = _name(resource)
    if isinstance(resource, BindingDecl):
        queue = await channel.get_queue(resource.destination, ensure=False)
        step: Awaitable[object] = (
            queue.unbind(resource.source, resource.routing_key, resource.arguments)
            if change.kind == "remove"
            else queue.bind(resource.source, resource.routing_key, arguments=resource.arguments)
        )
        await _guard(what, step)
        return
    if not change.in_place:
        await _guard(what, _delete(channel, resource))
    await _guard(what, _declare(channel, resource))


async def _declare(channel: AbstractChannel, resource: ExchangeDecl | QueueDecl) -> None:
    if isinstance(resource, ExchangeDecl):
        await channel.declare_exchange(
            resource.name,
            resource.type,
            durable=resource.durable,
            auto_delete=resource.auto_delete,
            internal=resource.internal,
            arguments=resource.arguments,
        )
    else:
        await channel.declare_queue(
            resource.name,
            durable=resource.durable,
            arguments={"x-queue-type": resource.type, **resource.arguments},
        )


async def _delete(channel: AbstractChannel, resource: ExchangeDecl | QueueDecl) -> None:
    if isinstance(resource, ExchangeDecl):
        await channel.exchange_delete(resource.name)
    else:
        # Quorum queues refuse if_unused / if_empty; a recreate deletes regardless.
        await channel.queue_delete(resource.name, if_unused=False, if_empty=False)


async def _rebind_recreated(channel: AbstractChannel, desired: Resources, done: Plan) -> None:
    """Deleting a queue or exchange took its bindings along; declare the file's again."""
    recreated = {
        c.resource.name
        for c in done.pending
        if not c.in_place and isinstance(c.resource, QueueDecl | ExchangeDecl)
    }
    for binding in desired.bindings:
        if binding.source in recreated or binding.destination in recreated:
            queue = await channel.get_queue(binding.destination, ensure=False)
            await _guard(
                _name(binding),
                queue.bind(binding.source, binding.routing_key, arguments=binding.arguments),
            )


async def _connect(amqp_url: str) -> AbstractConnection:
    parts = urlsplit(amqp_url)
    default = DEFAULT_AMQPS_PORT if parts.scheme == "amqps" else DEFAULT_AMQP_PORT
    where = f"RabbitMQ at {parts.hostname}:{parts.port or default}"
    user = unquote(parts.username or "guest")
    unreadable = unreadable_file(tls_files(amqp_url))
    if unreadable is not None:
        raise BrokerRefused(f"cannot connect to {where}: {unreadable}")
    try:
        return await aio_pika.connect(
            amqp_url, timeout=10, client_properties={"connection_name": "fleet topology apply"}
        )
    except aiormq.exceptions.ProbableAuthenticationError:
        raise BrokerRefused(
            f"{where} refused the login of user {user!r}: check the credentials in --url"
        ) from None
    except (TimeoutError, OSError, aiormq.exceptions.AMQPConnectionError) as exc:
        tls = handshake_problem(where, exc)
        if tls is not None:
            raise BrokerRefused(tls) from None
        refused = isinstance(exc, ConnectionRefusedError) or (
            bool(exc.args) and exc.args[0] == errno.ECONNREFUSED
        )
        reason = "connection refused" if refused else str(exc) or type(exc).__name__
        raise BrokerUnreachable(
            f"cannot reach {where}: {reason} (is it running? start it: rabbitmq-server -detached)"
        ) from None
    except aiormq.exceptions.AMQPError:
        # The broker closes the handshake without a reason aiormq passes on;
        # a vhost that does not exist or is closed to the user is the usual cause.
        raise BrokerUnreachable(
            f"{where} closed the connection while opening vhost {vhost_from(amqp_url)!r}: "
            f"check that it exists and that user {user!r} may use it"
        ) from None


async def _guard(what: str, step: Awaitable[object]) -> None:
    """Run one broker operation; its AMQP errors become fleet's, naming the object."""
    try:
        await step
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise UnsafeChange(f"{what}: the broker refused it: {_reason(exc)}") from None
    except aiormq.exceptions.ChannelAccessRefused as exc:
        raise TopologyError(
            f"{what}: access refused: {_reason(exc)} (grant the user configure "
            "permission on the vhost)"
        ) from None
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise TopologyError(f"{what}: not found: {_reason(exc)}") from None
    except aiormq.exceptions.AMQPChannelError as exc:
        raise TopologyError(f"{what}: the broker refused it: {_reason(exc)}") from None
    except aiormq.exceptions.AMQPConnectionError as exc:
        raise BrokerUnreachable(f"{what}: lost the connection to the broker: {exc}") from None


def _refusal(unsafe: list[Change]) -> str:
    # "type: classic → quorum" reads as "type classic → quorum" after the object's name.
    lines = [
        f"{_name(c.resource)}: {', '.join(d.replace(': ', ' ', 1) for d in c.differences)} "
        "cannot change in place"
        for c in unsafe
    ]
    kinds = {type(c.resource) for c in unsafe}
    losses = []
    if QueueDecl in kinds:
        losses.append("deletes the queue and its messages")
    if ExchangeDecl in kinds:
        losses.append("deletes the exchange and every binding from it")
    advice = f"rerun with --recreate ({'; '.join(losses)})"
    if len(lines) == 1:
        return f"{lines[0]}; {advice}"
    return "\n  ".join([f"{len(lines)} changes cannot be made in place; {advice}:", *lines])


def _name(resource: ExchangeDecl | QueueDecl | BindingDecl | UserDecl) -> str:
    """``queue 'payments'``: how errors name an object."""
    if isinstance(resource, BindingDecl):
        return f"binding {resource.source!r} → {resource.destination!r} [{resource.routing_key}]"
    kind = {QueueDecl: "queue", ExchangeDecl: "exchange", UserDecl: "user"}[type(resource)]
    return f"{kind} {resource.name!r}"


def _reason(exc: aiormq.exceptions.AMQPError) -> str:
    """The broker's own text (``PRECONDITION_FAILED - inequivalent arg ...``), if it sent one."""
    text = next((a for a in exc.args if isinstance(a, str) and a), None)
    return text or str(exc)
