"""The live vhost, read through the management API into the shape `expand` produces."""

from __future__ import annotations

from collections.abc import Collection

from topology.management import Management
from topology.resources import (
    BindingDecl,
    ExchangeDecl,
    Permissions,
    QueueDecl,
    Resources,
    TopicPermission,
    UserDecl,
)


def read_live(management: Management, users: Collection[str] = ()) -> Resources:
    """Every exchange, queue and exchange→queue binding of the management client's vhost,
    and those of `users` that exist, with what they may do there.

    The default exchange and the amq.* exchanges are left out (RabbitMQ owns
    them), and so are the implicit bindings of the default exchange. Users are
    read only when asked for (it takes the `administrator` tag).

    Raises:
        BrokerUnreachable: the management API cannot be reached or refuses the user.
    """
    exchanges = [
        ExchangeDecl(
            name=e.name,
            type=e.type,
            durable=e.durable,
            auto_delete=e.auto_delete,
            internal=e.internal,
            arguments=e.arguments,
        )
        for e in management.exchanges()
        if e.name and not e.name.startswith("amq.")
    ]
    queues = [
        QueueDecl(
            name=q.name,
            type=q.type,
            durable=q.durable,
            # The type has its own field; x-queue-type is only how it was declared.
            arguments={k: v for k, v in q.arguments.items() if k != "x-queue-type"},
        )
        for q in management.queues()
    ]
    bindings = [
        BindingDecl(
            source=b.source,
            destination=b.destination,
            routing_key=b.routing_key,
            arguments=b.arguments,
        )
        for b in management.bindings()
        if b.source and b.destination_type == "queue"
    ]
    return Resources(
        exchanges=exchanges,
        queues=queues,
        bindings=bindings,
        users=read_users(management, users) if users else [],
    )


def read_users(management: Management, names: Collection[str]) -> list[UserDecl]:
    """Those of `names` that exist on the broker, with their tags, password hash, and
    permissions and topic permissions on the management client's vhost."""
    permissions = {p.user: p for p in management.permissions() if p.user in names}
    topics: dict[str, list[TopicPermission]] = {}
    for t in management.topic_permissions():
        if t.user in names:
            topics.setdefault(t.user, []).append(
                TopicPermission(exchange=t.exchange, write=t.write, read=t.read)
            )
    found = []
    for user in management.users():
        if user.name not in names:
            continue
        granted = permissions.get(user.name)
        found.append(
            UserDecl(
                name=user.name,
                tags=user.tag_list,
                permissions=None
                if granted is None
                else Permissions(
                    configure=granted.configure, write=granted.write, read=granted.read
                ),
                topics=sorted(topics.get(user.name, []), key=lambda t: t.exchange),
                password_hash=user.password_hash,
                hashing_algorithm=user.hashing_algorithm,
            )
        )
    return found
