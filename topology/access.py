"""Least privilege: the broker user of each fleet process, and what it may do. Pure.

Under `access.users` every process gets a user that may do what the process
does on this vhost, and nothing else (RabbitMQ checks each operation against
the user's regular expressions; '' allows nothing):

    process     configure           write                              read
    worker      nothing             its publish_to exchange,           its queue
                                    its faults exchange,
                                    its queue's failure exchange
    ingress     server-named        its routes' exchanges,             reply exchanges,
                answer queues       server-named answer queues         answer queues
    webhooks    nothing             each subscription queue's          each subscription
                                    failure exchange                   queue
    outbox      nothing             the exchanges of `publishes`       nothing

`basic.publish` needs write on the exchange only, and passive declares (the
start-up checks, the lag poller) need no permission at all. Where a process
publishes to a topic exchange, a topic permission also limits the routing keys
to those it sends: a worker's, the events its handlers emit (the wiring that
`topology check` uses); the ingress's, its routes' keys; the outbox relay's,
its contracts' keys. On a topic exchange the ingress binds its answer queue to,
the same permission's `read` lists the answering events' keys. Other exchange
types have no topic permissions: a direct, fanout or headers exchange is limited
only by the write permission.

A new kind of process is one more function here and one more entry in `broker_users`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from contracts import Registry, default_registry
from contracts.faults import FAULT_PREFIX
from topology.check import WorkerWiring
from topology.model import Topology
from topology.names import (
    INGRESS_PROCESS,
    OUTBOX_PROCESS,
    WEBHOOKS_PROCESS,
    broker_user,
    failure_exchange,
    stream_lock_queue,
    stream_worker_base,
    webhook_queue,
)
from topology.resources import Permissions, TopicPermission, UserDecl
from topology.streams import streams_of

#: The names RabbitMQ gives queues declared with an empty name (the ingress's
#: answer queues). A client cannot declare a name with the reserved `amq.`
#: prefix itself, so the pattern reaches server-named queues only.
SERVER_NAMED_QUEUES = r"^amq\.gen-.*"

_SPECIAL = set("\\^$.|?*+()[]{}")


def broker_users(
    topology: Topology,
    wiring: Mapping[str, WorkerWiring],
    registry: Registry = default_registry,
) -> list[UserDecl]:
    """Every user `access.users` asks for, in a stable order; none when it is off.

    Args:
        topology: the file.
        wiring: what each worker's handlers handle and emit, by worker name.
        registry: where the ingress routes' contracts are registered.

    Raises:
        KeyError: a worker has no wiring (its module was not imported).
        UnknownEventType: an ingress route's contract is not registered.
    """
    if not topology.access.users:
        return []
    users = [worker_user(topology, name, wiring[name]) for name in topology.workers]
    ingress = ingress_user(topology, registry)
    if ingress is not None:
        users.append(ingress)
    webhooks = webhooks_user(topology)
    if webhooks is not None:
        users.append(webhooks)
    outbox = outbox_user(topology, registry)
    if outbox is not None:
        users.append(outbox)
    return users


def worker_user(topology: Topology, name: str, wiring: WorkerWiring) -> UserDecl:
    """A worker's user: read its queue, write its failure exchange, its `publish_to`
    exchange if its handlers emit anything and its `faults` exchange if it has one,
    with only the routing keys it sends (``fault.<key>`` for faults) on a topic one."""
    spec = topology.workers[name]
    consumed = topology.queues.get(spec.queue)
    configure, read = "", [spec.queue]
    if consumed is not None and consumed.type == "stream":
        # Its failure exchange is its own (many workers read one stream); its
        # replicas take turns by declaring an exclusive lock queue per partition.
        # Write on the streams themselves: RabbitMQ checks it for store_offset (a
        # stored offset is an entry in the stream).
        write = [failure_exchange(stream_worker_base(spec.queue, name))]
        write += streams_of(spec.queue, consumed)
        configure = pattern(
            [stream_lock_queue(s, spec.consumer or name) for s in streams_of(spec.queue, consumed)]
        )
        read = streams_of(spec.queue, consumed)
    else:
        write = [failure_exchange(spec.queue)]
    sent: dict[str, list[str]] = {}
    if spec.publish_to is not None and wiring.emits:
        sent[spec.publish_to] = [e.routing_key for e in wiring.emits]
    if spec.faults is not None and wiring.handles:
        # The Fault[...] of each message it parks (contracts.faults).
        sent.setdefault(spec.faults, []).extend(
            FAULT_PREFIX + e.routing_key
            for e in wiring.handles
            if not e.routing_key.startswith(FAULT_PREFIX)  # a parked fault is not announced
        )
    write += sent
    topics = _topics(topology, sent)
    return UserDecl(
        name=broker_user(topology.access.prefix, name),
        process=f"worker {name}",
        tags=["management"] if topology.access.management else [],
        permissions=Permissions(configure=configure, write=pattern(write), read=pattern(read)),
        topics=topics,
    )


def ingress_user(topology: Topology, registry: Registry = default_registry) -> UserDecl | None:
    """The ingress's user, or None without routes: write its routes' exchanges (their
    routing keys on topic ones), but not those of routes that accept into the outbox,
    which the relay publishes; with synchronous routes, declare, bind and consume a
    server-named answer queue, bound to the answering events' keys on the reply exchanges.

    Raises:
        UnknownEventType: a route's contract, or an answering event, is not registered.
    """
    routes = topology.ingress.routes
    if not routes:
        return None
    published: dict[str, list[str]] = {}
    answered: dict[str, list[str]] = {}
    for route in routes.values():
        if route.accept == "outbox":
            continue  # the outbox relay publishes it, with its own user
        key = route.routing_key or registry.lookup(route.contract, route.version).__routing_key__
        published.setdefault(route.exchange, []).append(key)
        if route.reply is not None:
            answered.setdefault(route.reply.exchange, []).extend(
                registry.lookup(event).__routing_key__ for event in route.reply.events
            )
    answers = [SERVER_NAMED_QUEUES] if answered else []
    return UserDecl(
        name=broker_user(topology.access.prefix, INGRESS_PROCESS),
        process=INGRESS_PROCESS,
        permissions=Permissions(
            configure=pattern([], *answers),
            write=pattern(published, *answers),
            read=pattern(answered, *answers),
        ),
        topics=_topics(topology, published, answered),
    )


def webhooks_user(topology: Topology) -> UserDecl | None:
    """The webhook dispatcher's user, or None without subscriptions: read each
    subscription's queue, write its failure exchange."""
    if not topology.webhooks:
        return None
    queues = [webhook_queue(name) for name in topology.webhooks]
    return UserDecl(
        name=broker_user(topology.access.prefix, WEBHOOKS_PROCESS),
        process=WEBHOOKS_PROCESS,
        permissions=Permissions(
            write=pattern(failure_exchange(q) for q in queues), read=pattern(queues)
        ),
    )


def outbox_user(topology: Topology, registry: Registry = default_registry) -> UserDecl | None:
    """The outbox relay's user, or None without an outbox: write the exchanges of
    `publishes` (their contracts' routing keys on topic ones), nothing else.

    Raises:
        UnknownEventType: a contract of `publishes` is not registered.
    """
    if topology.outbox is None:
        return None
    sent = {
        exchange: [registry.lookup(contract).__routing_key__ for contract in contracts]
        for exchange, contracts in topology.outbox.publishes.items()
    }
    return UserDecl(
        name=broker_user(topology.access.prefix, OUTBOX_PROCESS),
        process=OUTBOX_PROCESS,
        permissions=Permissions(write=pattern(sent)),
        topics=_topics(topology, sent),
    )


def pattern(names: Iterable[str], *also: str) -> str:
    """The regular expression matching exactly these names, or any of `also`:
    ``^orders$``, ``^(orders|orders\\.failures)$``; '' (nothing) for none."""
    literals = sorted({escape(name) for name in names})
    if len(literals) > 1:
        also = ("^(" + "|".join(literals) + ")$", *also)
    elif literals:
        also = (f"^{literals[0]}$", *also)
    return "|".join(also)


def escape(name: str) -> str:
    """A name as a literal in RabbitMQ's (PCRE) regular expressions: ``order.placed`` →
    ``order\\.placed``."""
    return "".join(f"\\{c}" if c in _SPECIAL else c for c in name)


def _topics(
    topology: Topology,
    written: Mapping[str, list[str]],
    read: Mapping[str, list[str]] | None = None,
) -> list[TopicPermission]:
    """A topic permission for each topic exchange written or bound to: the keys sent
    there (`write`) and bound there (`read`)."""
    read = read or {}
    return [
        TopicPermission(
            exchange=exchange,
            write=pattern(written.get(exchange, [])),
            read=pattern(read.get(exchange, [])),
        )
        for exchange in sorted({*written, *read})
        if exchange in topology.exchanges and topology.exchanges[exchange].type == "topic"
    ]
