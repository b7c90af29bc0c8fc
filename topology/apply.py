"""Make a live broker match the topology: plan, then carry the plan out with aio-pika.

apply declares exchanges, then queues, then bindings; unbinds what the file
dropped; and records what it applied (see `topology.record`). It never deletes
a queue or exchange implicitly: one that must change in a way RabbitMQ cannot
make in place is refused unless the caller asks to recreate it.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection

from topology.errors import BrokerUnreachable, TopologyError, UnsafeChange
from topology.expand import expand
from topology.live import read_live
from topology.management import Management, vhost_from
from topology.model import Topology
from topology.names import RECORD_QUEUE
from topology.plan import Change, ChangeKind, Plan, plan
from topology.record import Record, read_record, write_record
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources

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
    desired: Resources, amqp_url: str, *, management_url: str | None = None
) -> tuple[Plan, Record | None]:
    """The plan for the broker as it is now, and its record. Blocking (HTTP).

    Raises:
        BrokerUnreachable: the management API cannot be reached or refuses the user.
    """
    with Management.for_broker(amqp_url, management_url) as management:
        live = read_live(management)
        record = read_record(management)
    return plan(desired, live, record.resources if record else None), record


async def apply(
    desired: Topology | Resources,
    amqp_url: str,
    *,
    management_url: str | None = None,
    recreate: bool = False,
    confirm: Confirm | None = None,
    on_change: OnChange | None = None,
    file_sha256: str | None = None,
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

    Raises:
        UnsafeChange: a change needs a recreate and `recreate` is False (nothing
            is changed), or the broker refused a declaration.
        BrokerUnreachable: the broker or its management API cannot be reached.
        TopologyError: the broker refused an operation for another reason.
    """
    resources = expand(desired) if isinstance(desired, Topology) else desired
    current, record = await asyncio.to_thread(
        survey, resources, amqp_url, management_url=management_url
    )
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
            await _carry_out(channel, change)
            applied.append(change)
            if on_change is not None:
                on_change(change)
        await _rebind_recreated(channel, resources, current)
        now = datetime.now(UTC)
        await _guard(
            f"queue {RECORD_QUEUE!r} (fleet's record of what it applied)",
            write_record(
                channel, Record(resources=resources, applied_at=now, file_sha256=file_sha256)
            ),
        )
    return ApplyResult(current, applied)


async def _carry_out(channel: AbstractChannel, change: Change) -> None:
    resource = change.resource
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
    where = f"RabbitMQ at {parts.hostname}:{parts.port or 5672}"
    user = unquote(parts.username or "guest")
    try:
        return await aio_pika.connect(
            amqp_url, timeout=10, client_properties={"connection_name": "fleet topology apply"}
        )
    except aiormq.exceptions.ProbableAuthenticationError:
        raise BrokerUnreachable(
            f"{where} refused the login of user {user!r}: check the credentials in --url"
        ) from None
    except (TimeoutError, OSError, aiormq.exceptions.AMQPConnectionError) as exc:
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


def _name(resource: ExchangeDecl | QueueDecl | BindingDecl) -> str:
    """``queue 'payments'``: how errors name an object."""
    if isinstance(resource, BindingDecl):
        return f"binding {resource.source!r} → {resource.destination!r} [{resource.routing_key}]"
    kind = "queue" if isinstance(resource, QueueDecl) else "exchange"
    return f"{kind} {resource.name!r}"


def _reason(exc: aiormq.exceptions.AMQPError) -> str:
    """The broker's own text (``PRECONDITION_FAILED - inequivalent arg ...``), if it sent one."""
    text = next((a for a in exc.args if isinstance(a, str) and a), None)
    return text or str(exc)
