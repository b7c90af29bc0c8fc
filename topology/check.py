"""Checks over a whole topology: references between entries, and the wiring of
handlers to queues.

The wiring is handed in as data (which events each worker handles and emits),
so this module never imports worker code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

from contracts import Registry, UnknownEventType
from contracts.evolution import Evolution, default_evolution
from topology.breaker import breaker_problems
from topology.destinations import allowed, host_of, literal_internal
from topology.durability import durability_problems
from topology.duration import Duration
from topology.model import IngressRoute, Queue, RetryPolicy, Topology
from topology.names import (
    FAILURES_SUFFIX,
    INGRESS_PROCESS,
    OUTBOX_PROCESS,
    WEBHOOKS_PROCESS,
    broker_user,
    is_derived,
    retry_queue,
    webhook_queue,
)
from topology.order import order_problems
from topology.problems import Problem
from topology.routing import routes
from topology.stream_check import stream_problems, stream_worker_problems
from topology.versions import Version, version_problems

#: Queue arguments fleet sets itself; a file that sets them would break retries
#: or dead-lettering.
MANAGED_ARGUMENTS = frozenset(
    {
        "x-queue-type",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-delivery-limit",
        "x-dead-letter-strategy",
        "x-message-ttl",
    }
)


class EventRoute(msgspec.Struct, frozen=True):
    """An event type as the wiring check sees it: its wire name, routing key and version."""

    name: str
    routing_key: str
    version: int = 1


class WorkerWiring(msgspec.Struct, frozen=True):
    """What one worker's code handles and may emit."""

    handles: list[EventRoute]
    emits: list[EventRoute]


def check_references(topology: Topology, rabbitmq: Version | None = None) -> list[Problem]:
    """Problems within the file alone: dangling names, misplaced settings, reserved names,
    and settings RabbitMQ versions treat differently (those that matter on `rabbitmq`,
    or all of them)."""
    problems: list[Problem] = []
    exchanges = sorted(topology.exchanges)
    queues = sorted(topology.queues)
    derived: dict[str, str] = {}
    for name in topology.exchanges:
        if name.endswith(FAILURES_SUFFIX):
            problems.append(
                Problem(
                    f"exchanges.{name}",
                    f"names ending in {FAILURES_SUFFIX!r} are reserved for the failure "
                    "exchanges fleet derives",
                )
            )
    for name, queue in topology.queues.items():
        path = f"queues.{name}"
        if is_derived(name):
            problems.append(
                Problem(
                    path,
                    "names ending in '.dead' or holding '.retry.' are "
                    "reserved for the queues fleet derives",
                )
            )
        for i, binding in enumerate(queue.bind):
            if binding.exchange not in topology.exchanges:
                problems.append(
                    Problem(
                        f"{path}.bind[{i}].exchange",
                        f"unknown exchange {binding.exchange!r}{_known(exchanges)}",
                    )
                )
        if not queue.durable and queue.type != "classic":
            problems.append(
                Problem(f"{path}.durable", f"{queue.type} queues are always durable; remove it")
            )
        if queue.delivery_limit is not None and queue.type == "stream":
            problems.append(
                Problem(
                    f"{path}.delivery_limit",
                    "streams have no delivery limit: nothing is acked or redelivered",
                )
            )
        for key in sorted(MANAGED_ARGUMENTS & queue.arguments.keys()):
            problems.append(
                Problem(
                    f"{path}.arguments.{key}",
                    "set by fleet from the queue's type, retry and delivery_limit; remove it",
                )
            )
        problems += stream_problems(topology, name, queue)
        if not queue.bind and queue.partitions is None:
            problems.append(
                Problem(
                    f"{path}.bind", "no bindings: nothing will ever reach this queue", "warning"
                )
            )
        if queue.delay is not None:
            problems += _delay_problems(topology, name, queue)
            continue
        seen: set[str] = set()
        for i, delay in enumerate(queue.retry.delays):
            retry = retry_queue(name, delay)
            if retry in seen:
                problems.append(
                    Problem(f"{path}.retry.delays[{i}]", f"delay {delay} is listed twice")
                )
            seen.add(retry)
            derived[retry] = path
    for name, worker in topology.workers.items():
        path = f"workers.{name}"
        consumed = topology.queues.get(worker.queue)
        if consumed is None:
            problems.append(
                Problem(f"{path}.queue", f"unknown queue {worker.queue!r}{_known(queues)}")
            )
        else:
            problems += stream_worker_problems(name, worker, consumed)
        if consumed is not None and consumed.delay is not None:
            problems.append(
                Problem(
                    f"{path}.queue",
                    f"queue {worker.queue!r} is a delay queue: its messages go to "
                    f"{consumed.delay.then!r} after {consumed.delay.ttl}; consume that queue",
                )
            )
        if worker.publish_to is not None and worker.publish_to not in topology.exchanges:
            problems.append(
                Problem(
                    f"{path}.publish_to",
                    f"unknown exchange {worker.publish_to!r}{_known(exchanges)}",
                )
            )
        if worker.faults is not None and worker.faults not in topology.exchanges:
            problems.append(
                Problem(
                    f"{path}.faults",
                    f"unknown exchange {worker.faults!r}{_known(exchanges)}",
                )
            )
        problems += breaker_problems(name, worker.breaker)
        problems += order_problems(name, worker, consumed)
        if worker.concurrency > worker.prefetch:
            problems.append(
                Problem(
                    f"{path}.concurrency",
                    f"concurrency {worker.concurrency} exceeds "
                    f"prefetch {worker.prefetch}: the extra slots can never be used",
                    "warning",
                )
            )
    problems += _ingress_problems(topology)
    problems += _webhook_problems(topology)
    problems += _outbox_problems(topology)
    problems += _access_problems(topology)
    problems += durability_problems(topology)
    problems += version_problems(topology, rabbitmq)
    return problems


def _access_problems(topology: Topology) -> list[Problem]:
    """Under `access.users` no worker may share its user name with another process."""
    if not topology.access.users:
        return []
    return [
        Problem(
            f"workers.{name}",
            f"with access.users, worker {name!r} would share the broker user "
            f"{broker_user(topology.access.prefix, name)!r} with the {name} process: "
            "rename the worker",
        )
        for name in topology.workers
        if name in (INGRESS_PROCESS, WEBHOOKS_PROCESS, OUTBOX_PROCESS)
    ]


def _outbox_problems(topology: Topology) -> list[Problem]:
    """The exchanges the outbox publishes to are declared.

    Whether its contracts exist is checked where contracts are imported (the CLI).
    """
    if topology.outbox is None:
        return []
    exchanges = sorted(topology.exchanges)
    problems = []
    for exchange, contracts in topology.outbox.publishes.items():
        where = f"outbox.publishes.{exchange}"
        if exchange not in topology.exchanges:
            problems.append(Problem(where, f"unknown exchange {exchange!r}{_known(exchanges)}"))
        if not contracts:
            problems.append(
                Problem(where, "list the contracts producers record for it, like [OrderPlaced]")
            )
    return problems


def _webhook_problems(topology: Topology) -> list[Problem]:
    """Each subscription's exchange is declared, its URL is http(s) with a host, its
    queue name is free, and a literal internal destination is allowed explicitly."""
    problems: list[Problem] = []
    exchanges = sorted(topology.exchanges)
    for name, subscription in topology.webhooks.items():
        path = f"webhooks.{name}"
        if subscription.exchange not in topology.exchanges:
            problems.append(
                Problem(
                    f"{path}.exchange",
                    f"unknown exchange {subscription.exchange!r}{_known(exchanges)}",
                )
            )
        for i, event in enumerate(subscription.subscribed()):
            if event.exchange is not None and event.exchange not in topology.exchanges:
                problems.append(
                    Problem(
                        f"{path}.events[{i}].exchange",
                        f"unknown exchange {event.exchange!r}{_known(exchanges)}",
                    )
                )
        queue = webhook_queue(name)
        if queue in topology.queues:
            problems.append(
                Problem(path, f"its queue {queue!r} is also declared under queues: rename one")
            )
        parts = urlsplit(subscription.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(
                Problem(
                    f"{path}.url", f"expected an http:// or https:// URL, got {subscription.url!r}"
                )
            )
            continue
        if not subscription.retry.delays:
            problems.append(
                Problem(
                    f"{path}.retry.delays",
                    "no delays: a failed delivery is dead-lettered after one attempt",
                    "warning",
                )
            )
        if len(set(subscription.retry.delays)) != len(subscription.retry.delays):
            problems.append(Problem(f"{path}.retry.delays", "a delay is listed twice"))
        internal = literal_internal(subscription.url)
        host = host_of(subscription.url) or ""
        if (
            internal is not None
            and not subscription.allow_private
            and not allowed(host, host, subscription.allow_hosts)
        ):
            problems.append(
                Problem(
                    f"{path}.url",
                    f"{host} is a {internal} address: every delivery will be refused "
                    "(SSRF guard) unless allow_private is set or allow_hosts lists it",
                    "warning",
                )
            )
    return problems


def check_webhook_contracts(topology: Topology, registry: Registry) -> list[Problem]:
    """Every subscribed contract exists in `registry` (the CLI imports the contracts first)."""
    problems: list[Problem] = []
    for name, subscription in topology.webhooks.items():
        for i, event in enumerate(subscription.subscribed()):
            try:
                registry.lookup(event.contract, event.version)
            except UnknownEventType as exc:
                problems.append(Problem(f"webhooks.{name}.events[{i}]", str(exc)))
    return problems


def check_outbox_contracts(topology: Topology, registry: Registry) -> list[Problem]:
    """Every contract the outbox publishes exists in `registry`, and reaches a queue on
    its exchange: a row nothing is bound for would only ever be parked."""
    if topology.outbox is None:
        return []
    problems: list[Problem] = []
    for exchange, contracts in topology.outbox.publishes.items():
        for i, name in enumerate(contracts):
            where = f"outbox.publishes.{exchange}[{i}]"
            try:
                contract = registry.lookup(name)
            except UnknownEventType as exc:
                problems.append(Problem(where, str(exc)))
                continue
            key = contract.__routing_key__
            if exchange in topology.exchanges and not _receiving_queues(topology, exchange, key):
                problems.append(
                    Problem(
                        where,
                        f"{name} ({key}) reaches no queue on exchange {exchange!r}: the relay "
                        "would park every such row as unroutable",
                    )
                )
    return problems


#: Paths the ingress answers itself.
RESERVED_PATHS = frozenset({"/healthz", "/readyz"})
#: How long a signed request may verify: its timestamp may be up to 5 minutes ahead
#: when first seen and stays valid until 5 minutes after it
#: (workers.standard_webhooks.TOLERANCE_SECONDS either way), so its id must be
#: remembered at least this long.
SIGNATURE_TOLERANCE = Duration(600_000)


def _ingress_problems(topology: Topology) -> list[Problem]:
    """Each route's path is absolute and free, and its exchange is declared.

    Whether its contract exists is checked where contracts are imported (the CLI).
    """
    problems: list[Problem] = []
    exchanges = sorted(topology.exchanges)
    for path, route in topology.ingress.routes.items():
        where = f"ingress.routes.{path}"
        if not path.startswith("/"):
            problems.append(Problem(where, "a route's path starts with '/'"))
        elif path in RESERVED_PATHS:
            problems.append(Problem(where, f"{path} is served by the ingress itself"))
        if route.exchange not in topology.exchanges:
            problems.append(
                Problem(
                    f"{where}.exchange", f"unknown exchange {route.exchange!r}{_known(exchanges)}"
                )
            )
        for i, entry in enumerate(route.allow_ips):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problems.append(
                    Problem(
                        f"{where}.allow_ips[{i}]",
                        f"{entry!r} is not an IP address or CIDR block (like 10.0.0.0/8)",
                    )
                )
        if (
            route.auth is not None
            and route.auth.type in ("standard-webhooks", "stripe")
            and route.dedupe_window < SIGNATURE_TOLERANCE
        ):
            problems.append(
                Problem(
                    f"{where}.dedupe_window",
                    f"shorter than the {SIGNATURE_TOLERANCE} a signed request can verify for "
                    "(its timestamp is valid 5 minutes either way): a replay after the "
                    "window but within the tolerance would be published again",
                    "warning",
                )
            )
        if route.reply is not None and route.reply.exchange not in topology.exchanges:
            problems.append(
                Problem(
                    f"{where}.reply.exchange",
                    f"unknown exchange {route.reply.exchange!r}{_known(exchanges)}",
                )
            )
        if route.accept == "outbox":
            problems += _accept_outbox_problems(topology, where, route)
    return problems


def _accept_outbox_problems(topology: Topology, where: str, route: IngressRoute) -> list[Problem]:
    """A route accepting into the outbox needs a relay that may publish its contract."""
    if route.reply is not None:
        return [
            Problem(
                f"{where}.accept",
                "a synchronous route (reply) waits on the broker for its answer: "
                "accept it with `confirm`, or drop `reply`",
            )
        ]
    if topology.outbox is None:
        return [
            Problem(
                f"{where}.accept",
                "`accept: outbox` needs an `outbox:` section, whose relay publishes the "
                f"accepted events: outbox: {{publishes: {{{route.exchange}: "
                f"[{route.contract}]}}}}",
            )
        ]
    listed = topology.outbox.publishes.get(route.exchange, [])
    if route.contract not in listed:
        return [
            Problem(
                f"{where}.accept",
                f"add {route.contract} to outbox.publishes.{route.exchange}: the relay "
                "publishes only the contracts listed there (its broker user may publish "
                "nothing else)",
            )
        ]
    return []


def _delay_problems(topology: Topology, name: str, queue: Queue) -> list[Problem]:
    """A delay queue must hand its messages to a queue a worker can consume."""
    assert queue.delay is not None
    path = f"queues.{name}"
    problems: list[Problem] = []
    then = queue.delay.then
    target = topology.queues.get(then)
    if queue.type == "stream":
        problems.append(
            Problem(
                f"{path}.delay",
                "a stream cannot delay messages (they never expire one by one): "
                "make it a quorum or classic queue",
            )
        )
    if target is None:
        problems.append(
            Problem(
                f"{path}.delay.then", f"unknown queue {then!r}{_known(sorted(topology.queues))}"
            )
        )
    elif then == name:
        problems.append(
            Problem(f"{path}.delay.then", "a delay queue cannot hand messages back to itself")
        )
    elif target.type == "stream":
        problems.append(
            Problem(
                f"{path}.delay.then",
                f"queue {then!r} is a stream: a delay hands messages to a queue "
                "a worker consumes (classic or quorum)",
            )
        )
    if queue.retry != RetryPolicy():
        problems.append(
            Problem(
                f"{path}.retry",
                "a delay queue has no consumer, so nothing is retried from it: remove it",
            )
        )
    return problems


def check_wiring(topology: Topology, wiring: Mapping[str, WorkerWiring]) -> list[Problem]:
    """Problems between the file and the handlers' code.

    A handled event that no binding of the worker's queue routes is an error;
    so is a worker that emits events without `publish_to`. An emitted event that
    no queue receives is a warning unless the worker lists it as terminal.
    """
    problems: list[Problem] = []
    for name, wired in wiring.items():
        worker = topology.workers.get(name)
        if worker is None:
            continue
        path = f"workers.{name}"
        for event in wired.handles:
            if not _reaches_queue(topology, worker.queue, event.routing_key):
                problems.append(
                    Problem(
                        path,
                        f"handles {event.name} ({event.routing_key}) but no "
                        f"binding of queue {worker.queue!r} routes it",
                    )
                )
        if wired.emits and worker.publish_to is None:
            emitted = ", ".join(e.name for e in wired.emits)
            problems.append(
                Problem(
                    f"{path}.publish_to",
                    f"the handlers emit {emitted}: name the exchange to publish them to",
                )
            )
            continue
        for event in wired.emits:
            if worker.publish_to is None:
                continue
            receivers = _receiving_queues(topology, worker.publish_to, event.routing_key)
            if not receivers and event.name not in worker.terminal:
                problems.append(
                    Problem(
                        path,
                        f"emits {event.name} ({event.routing_key}) to exchange "
                        f"{worker.publish_to!r} but no queue receives it; bind "
                        "one or list it under 'terminal'",
                        "warning",
                    )
                )
            problems += _unhandled_arrivals(topology, wiring, event, receivers, name)
    return problems


def _unhandled_arrivals(
    topology: Topology,
    wiring: Mapping[str, WorkerWiring],
    event: EventRoute,
    receivers: list[str],
    emitter: str,
    evolution: Evolution = default_evolution,
) -> list[Problem]:
    problems = []
    for other_name, other in topology.workers.items():
        if other.queue not in receivers or other_name not in wiring:
            continue
        versions = [e.version for e in wiring[other_name].handles if e.name == event.name]
        on_stream = topology.queues[other.queue].type == "stream"
        if not versions and on_stream:
            continue  # a stream worker passes over other readers' events
        if not versions:
            problems.append(
                Problem(
                    f"workers.{other_name}",
                    f"queue {other.queue!r} receives "
                    f"{event.name} (emitted by {emitter}) but no handler takes it: "
                    "it would be dead-lettered",
                    "warning",
                )
            )
        elif event.version not in versions and (
            evolution.route(event.name, event.version, versions) is None
        ):
            handled = ", ".join(f"v{v}" for v in sorted(versions))
            problems.append(
                Problem(
                    f"workers.{other_name}",
                    f"receives {event.name} v{event.version} (emitted by {emitter}) but "
                    f"handles {handled}, and no upcaster or downcaster leads there: "
                    f"it would be parked as version-unsupported",
                )
            )
    return problems


def _reaches_queue(topology: Topology, queue: str, routing_key: str) -> bool:
    """Whether a binding of `queue`, or of a delay queue that ends in it, routes the key."""
    if queue not in topology.queues:
        return False
    return any(
        routes(topology.exchanges[b.exchange].type, b.routing_key, routing_key)
        for name, spec in topology.queues.items()
        if _final_queue(topology, name) == queue
        for b in spec.bind
        if b.exchange in topology.exchanges
    )


def _receiving_queues(topology: Topology, exchange: str, routing_key: str) -> list[str]:
    """The queues a publish reaches: directly, and where delay queues hand it on."""
    exchange_type = topology.exchanges[exchange].type
    direct = [
        name
        for name, queue in topology.queues.items()
        if any(
            b.exchange == exchange and routes(exchange_type, b.routing_key, routing_key)
            for b in queue.bind
        )
    ]
    return list(dict.fromkeys([*direct, *(_final_queue(topology, name) for name in direct)]))


def _final_queue(topology: Topology, name: str) -> str:
    """Where a message that enters `name` is consumed: delay queues followed to their end."""
    seen = {name}
    queue = topology.queues.get(name)
    while queue is not None and queue.delay is not None and queue.delay.then not in seen:
        name = queue.delay.then
        seen.add(name)
        queue = topology.queues.get(name)
    return name


def _known(names: list[str]) -> str:
    return f" (known: {', '.join(names)})" if names else " (none are declared)"
