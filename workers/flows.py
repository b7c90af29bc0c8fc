"""Who sends and receives which contracts in a fleet, from its topology and its code.

One `Flow` per thing a process does with messages:

    kind      action   who                  where
    handles   receive  a worker             its queue
    emits     send     a worker             its `publish_to` exchange (mandatory)
    terminal  send     a worker             there too: its `terminal` events (not mandatory)
    faults    send     a worker             its `faults` exchange: Fault[<each it handles>]
    ingress   send     an ingress route     the route's exchange (mandatory)
    reply     receive  a synchronous route  the reply exchange (a server-named queue)
    webhook   receive  a subscription       its queue, webhook.<name>

`fleet asyncapi` turns them into operations and `fleet contracts docs` into
each contract's producers and consumers, so the two cannot disagree. Besides
the flows, `FleetFlows` says which contracts travel through each exchange
and sit in each queue (for a channel's messages): what is sent to an
exchange, or reaches a consumed queue through one of its bindings, travels
through that exchange; a queue holds what its bindings route to it from
there, and what its consumer takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from contracts import Event, Evolution, Fault, Registry, default_evolution
from topology import Binding, Queue, Topology, WorkerSpec
from topology.expand import webhook_work_queue
from topology.names import webhook_queue
from topology.routing import routes
from workers.worker import Worker

FlowKind = Literal["handles", "emits", "terminal", "faults", "ingress", "reply", "webhook"]
Action = Literal["send", "receive"]

_ACTIONS: dict[FlowKind, Action] = {
    "handles": "receive",
    "emits": "send",
    "terminal": "send",
    "faults": "send",
    "ingress": "send",
    "reply": "receive",
    "webhook": "receive",
}


@dataclass(frozen=True)
class Flow:
    """One process sending contracts to an exchange, or receiving them.

    Attributes:
        kind: what the flow is (see the module's table).
        party: the worker's name, the ingress route's path, or the subscription's name.
        exchange: where a send goes, or where a reply is received from.
        queue: where a worker or subscription receives from.
        contracts: what travels, by version.
        converted: those of `contracts` a worker takes through an upcaster or a
            downcaster (its handler sees another version).
        routing_key: an ingress route's own routing key, when not the contract's.
    """

    kind: FlowKind
    party: str
    contracts: tuple[type[Event], ...]
    exchange: str | None = None
    queue: str | None = None
    converted: frozenset[type[Event]] = frozenset()
    routing_key: str | None = None

    @property
    def action(self) -> Action:
        return _ACTIONS[self.kind]

    @property
    def mandatory(self) -> bool:
        """Whether a send is published with `mandatory` (unrouted: a failure)."""
        return self.kind in ("emits", "ingress")


@dataclass(frozen=True)
class FleetFlows:
    """A fleet's flows, every contract it knows, and what travels where.

    Attributes:
        flows: in topology order: workers, then ingress routes, then webhooks.
        contracts: every contract, by wire name then version: the registry's
            and any other a flow carries (the fault events).
        exchanges: each exchange of the topology → the contracts through it.
        queues: each queue (the file's and each subscription's) → the contracts in it.
        bindings: each queue → its bindings (a subscription's are derived).
        webhook_queues: each subscription's queue (``webhook.<name>``) as the work
            queue it implies (`topology.expand.webhook_work_queue`).
    """

    flows: list[Flow]
    contracts: list[type[Event]]
    exchanges: dict[str, list[type[Event]]] = field(default_factory=dict)
    queues: dict[str, list[type[Event]]] = field(default_factory=dict)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    webhook_queues: dict[str, Queue] = field(default_factory=dict)

    def of(self, contract: type[Event]) -> list[Flow]:
        """The flows that carry `contract`."""
        return [f for f in self.flows if contract in f.contracts]


def fleet_flows(
    topology: Topology,
    workers: Mapping[str, Worker],
    registry: Registry,
    evolution: Evolution = default_evolution,
) -> FleetFlows:
    """The flows of a fleet whose workers are loaded and contracts registered.

    Raises:
        UnknownEventType: an ingress route or subscription names a contract the
            registry does not hold.
    """
    flows: list[Flow] = []
    for name, spec in topology.workers.items():
        worker = workers.get(name)
        if worker is not None:
            flows += _worker_flows(name, worker, spec, registry, evolution)
    for path, route in topology.ingress.routes.items():
        contract = registry.lookup(route.contract, route.version)
        own_key = route.routing_key if route.routing_key != contract.__routing_key__ else None
        flows.append(
            Flow("ingress", path, (contract,), exchange=route.exchange, routing_key=own_key)
        )
        if route.reply is not None:
            answers = tuple(t for name in route.reply.events for t in _versions(registry, name))
            flows.append(Flow("reply", path, answers, exchange=route.reply.exchange))
    bindings = {name: list(queue.bind) for name, queue in topology.queues.items()}
    webhook_queues: dict[str, Queue] = {}
    for name, subscription in topology.webhooks.items():
        queue = webhook_queue(name)
        webhook_queues[queue] = webhook_work_queue(name, subscription, registry)
        bindings[queue] = list(webhook_queues[queue].bind)
        subscribed = tuple(
            registry.lookup(e.contract, e.version) for e in subscription.subscribed()
        )
        flows.append(Flow("webhook", name, subscribed, queue=queue))
    contracts = _unique([*registry, *(t for f in flows for t in f.contracts)])
    contracts.sort(key=lambda t: (t.__wire_name__, t.__version__))
    exchanges = _exchange_traffic(topology, flows, bindings)
    queues = {
        name: _queue_traffic(topology, name, flows, bindings[name], exchanges) for name in bindings
    }
    return FleetFlows(flows, contracts, exchanges, queues, bindings, webhook_queues)


def _worker_flows(
    name: str,
    worker: Worker,
    spec: WorkerSpec,
    registry: Registry,
    evolution: Evolution,
) -> list[Flow]:
    handled = [h.event_type for h in worker.handlers]
    converted = [
        t
        for t in registry
        if t not in handled
        and evolution.route(t.__wire_name__, t.__version__, _handled_versions(handled, t))
        is not None
    ]
    accepted = (*handled, *converted)
    flows = [Flow("handles", name, accepted, queue=spec.queue, converted=frozenset(converted))]
    emitted = _unique(t for h in worker.handlers for t in h.emits)
    terminal = [t for t in emitted if t.__wire_name__ in spec.terminal]
    mandatory = [t for t in emitted if t not in terminal]
    if spec.publish_to is not None:
        if mandatory:
            flows.append(Flow("emits", name, tuple(mandatory), exchange=spec.publish_to))
        if terminal:
            flows.append(Flow("terminal", name, tuple(terminal), exchange=spec.publish_to))
    if spec.faults is not None and handled:
        faults = tuple(Fault.of(t) for t in handled)
        flows.append(Flow("faults", name, faults, exchange=spec.faults))
    return flows


def _handled_versions(handled: list[type[Event]], contract: type[Event]) -> list[int]:
    return [t.__version__ for t in handled if t.__wire_name__ == contract.__wire_name__]


def _versions(registry: Registry, name: str) -> list[type[Event]]:
    """Every registered version of `name` (UnknownEventType, listing the known, if none)."""
    found = [t for t in registry if t.__wire_name__ == name]
    return found or [registry.lookup(name)]


def _exchange_traffic(
    topology: Topology, flows: list[Flow], bindings: dict[str, list[Binding]]
) -> dict[str, list[type[Event]]]:
    traffic: dict[str, list[type[Event]]] = {name: [] for name in topology.exchanges}
    for flow in flows:
        if flow.exchange in traffic:
            traffic[flow.exchange] += flow.contracts
        if flow.queue is None:
            continue
        for binding in bindings.get(flow.queue, []):
            exchange = topology.exchanges.get(binding.exchange)
            if exchange is None:
                continue
            traffic[binding.exchange] += [
                t
                for t in flow.contracts
                if routes(exchange.type, binding.routing_key, t.__routing_key__)
            ]
    return {name: _sorted(contracts) for name, contracts in traffic.items()}


def _queue_traffic(
    topology: Topology,
    queue: str,
    flows: list[Flow],
    bindings: list[Binding],
    exchanges: dict[str, list[type[Event]]],
) -> list[type[Event]]:
    held: list[type[Event]] = [t for f in flows if f.queue == queue for t in f.contracts]
    for binding in bindings:
        exchange = topology.exchanges.get(binding.exchange)
        if exchange is None:
            continue
        held += [
            t
            for t in exchanges.get(binding.exchange, [])
            if routes(exchange.type, binding.routing_key, t.__routing_key__)
        ]
    return _sorted(held)


def _unique(types: Iterable[type[Event]]) -> list[type[Event]]:
    return list(dict.fromkeys(types))


def _sorted(types: Iterable[type[Event]]) -> list[type[Event]]:
    return sorted(_unique(types), key=lambda t: (t.__wire_name__, t.__version__))
