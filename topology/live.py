"""The live vhost, read through the management API into the shape `expand` produces."""

from __future__ import annotations

from topology.management import Management
from topology.resources import BindingDecl, ExchangeDecl, QueueDecl, Resources


def read_live(management: Management) -> Resources:
    """Every exchange, queue and exchange→queue binding of the management client's vhost.

    The default exchange and the amq.* exchanges are left out (RabbitMQ owns
    them), and so are the implicit bindings of the default exchange.

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
    return Resources(exchanges=exchanges, queues=queues, bindings=bindings)
