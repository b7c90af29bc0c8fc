"""The topology as a Mermaid flowchart: how an event travels through the fleet.

    exchange ──routing key──▶ queue ──▶ worker ──▶ emitted event ──routing key──▶ exchange
    exchange ──event──▶ webhook subscription (its URL)

The wiring (what each worker handles and emits) is handed in as data, so this
module imports no worker code. The retry and dead-letter queues fleet derives
are left out: they are the same for every queue and would hide the flow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from topology.check import WorkerWiring
from topology.model import Topology


def mermaid(topology: Topology, wiring: Mapping[str, WorkerWiring] | None = None) -> str:
    """Mermaid flowchart text for the topology, one statement per line.

    Args:
        topology: the loaded topology file.
        wiring: worker name → what its handlers emit; a worker missing here is
            drawn with a dashed arrow to the exchange it publishes to.
    """
    wiring = wiring or {}
    ids = _Ids()
    lines = ["flowchart LR"]
    for name, exchange in topology.exchanges.items():
        lines.append(f"    {ids.of('ex', name)}{{{{{_label(f'{name} ({exchange.type})')}}}}}")
    for name, queue in topology.queues.items():
        lines.append(f"    {ids.of('q', name)}[({_label(f'{name} ({queue.type})')})]")
    for name in topology.workers:
        lines.append(f"    {ids.of('w', name)}[[{_label(f'{name} worker')}]]")
    for name, queue in topology.queues.items():
        for binding in queue.bind:
            lines.append(
                f"    {ids.of('ex', binding.exchange)} -->|{_label(binding.routing_key)}| "
                f"{ids.of('q', name)}"
            )
    for name, worker in topology.workers.items():
        node = ids.of("w", name)
        lines.append(f"    {ids.of('q', worker.queue)} --> {node}")
        wired = wiring.get(name)
        if wired is None:
            if worker.publish_to is not None:
                lines.append(f"    {node} -.-> {ids.of('ex', worker.publish_to)}")
            continue
        for event in wired.emits:
            emitted = ids.of("ev", f"{name}.{event.name}")
            lines.append(f"    {emitted}>{_label(event.name)}]")
            lines.append(f"    {node} --> {emitted}")
            if worker.publish_to is not None:
                lines.append(
                    f"    {emitted} -->|{_label(event.routing_key)}| "
                    f"{ids.of('ex', worker.publish_to)}"
                )
    lines += _webhooks(topology, ids)
    return "\n".join(lines) + "\n"


def _webhooks(topology: Topology, ids: _Ids) -> list[str]:
    """Each subscription as a node fed by its events (by name: no registry needed here)."""
    lines = []
    for name, subscription in topology.webhooks.items():
        node = ids.of("wh", name)
        lines.append(f"    {node}[/{_label(f'{name} webhook: {subscription.url}')}/]")
        for event in subscription.subscribed():
            source = ids.of("ex", event.exchange or subscription.exchange)
            lines.append(f"    {source} -->|{_label(event.contract)}| {node}")
    return lines


class _Ids:
    """Stable Mermaid node ids: ``q_order_events`` for queue 'order-events', unique per kind."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], str] = {}
        self._taken: set[str] = set()

    def of(self, kind: str, name: str) -> str:
        key = (kind, name)
        if key not in self._ids:
            # Prefixed, so no id is a Mermaid keyword such as 'end'.
            base = f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
            candidate, n = base, 1
            while candidate in self._taken:
                n += 1
                candidate = f"{base}_{n}"
            self._ids[key] = candidate
            self._taken.add(candidate)
        return self._ids[key]


def _label(text: str) -> str:
    """A quoted label; '#' and '"' as entity codes, which Mermaid would otherwise parse."""
    return '"' + text.replace("#", "#35;").replace('"', "#quot;") + '"'
