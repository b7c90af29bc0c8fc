"""The project a command works on: where its code is imported from, and which
contracts are its own.

A team's project is a directory holding `fleet.yaml` and the Python packages
its topology names (`module: shop.workers.welcome`, `contracts: [shop.contracts]`).
Every command puts the working directory, and the topology file's directory,
first on the import path, as comparable tools do, so no PYTHONPATH is needed.

A fleet's contracts are the Event classes its topology's `contracts` modules
expose; they are registered on import, with no decorator. Without a
`contracts` list they are the ones its workers' handlers take and emit. Only
the project's modules are imported, so two projects with a contract of the
same name never meet in one process.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from contracts import ContractError, Event, Registry, default_registry
from contracts.faults import Fault, is_fault
from topology import Problem, Topology
from workers.worker import Worker


class ContractsUnavailable(ContractError):
    """A module named under `contracts:` cannot be imported, or exposes no contract."""


def use_project_paths(topology_file: str | os.PathLike[str] | None = None) -> None:
    """Put the working directory and the topology file's directory first on sys.path."""
    folders = [Path.cwd()]
    if topology_file is not None:
        folders.append(Path(topology_file).resolve().parent)
    for folder in reversed(folders):
        entry = str(folder)
        if entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def searched() -> str:
    """The import path's first folders, for an error saying where a module was looked for."""
    return ", ".join(p or "." for p in sys.path[:3])


def register_contracts(topology: Topology, workers: Mapping[str, Worker] | None = None) -> Registry:
    """The fleet's contracts, in a registry of their own; each is also added to the
    process-wide `default_registry` (which `@register` fills), for code that reads it.

    Args:
        topology: whose `contracts` modules to import.
        workers: the loaded workers, whose handlers' contracts count when the
            topology lists no `contracts` modules.

    Raises:
        ContractsUnavailable: a listed module cannot be imported or exposes no Event.
        DuplicateContract: two different classes claim one name and version.
    """
    registry = Registry()
    for index, name in enumerate(topology.contracts):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ContractsUnavailable(
                f"contracts[{index}]: cannot import {name!r} ({exc}); searched {searched()}: "
                "run fleet in the project's directory, or fix the module name"
            ) from None
        found = exposed_contracts(vars(module).values())
        if not found:
            raise ContractsUnavailable(
                f"contracts[{index}]: module {name!r} exposes no Event class: define the "
                "contracts there, or import them into it"
            )
        for event_type in found:
            registry.register(event_type)
    if not topology.contracts:
        for worker in (workers or {}).values():
            for spec in worker.handlers:
                for event_type in (spec.event_type, *spec.emits):
                    registry.register(event_type)
    default_registry.adopt(registry)
    return registry


def exposed_contracts(values: Iterable[object]) -> list[type[Event]]:
    """The concrete Event classes among a module's attributes (not the bases)."""
    return [
        value
        for value in values
        if isinstance(value, type)
        and issubclass(value, Event)
        and value not in (Event, Fault)
        and "__routing_key__" in vars(value)
    ]


def unlisted_contracts(
    topology: Topology, workers: Mapping[str, Worker], registry: Registry
) -> list[Problem]:
    """A problem for each contract a handler takes or emits that no module under
    `contracts:` exposes (nothing to check when the topology lists none)."""
    if not topology.contracts:
        return []
    listed = set(registry)
    problems: list[Problem] = []
    for name, worker in workers.items():
        for spec in worker.handlers:
            for verb, event_type in [("handles", spec.event_type)] + [
                ("emits", emitted) for emitted in spec.emits
            ]:
                original = getattr(event_type, "original", None) if is_fault(event_type) else None
                if event_type in listed or original in listed:
                    continue
                module = event_type.__module__
                problems.append(
                    Problem(
                        f"workers.{name}",
                        f"{verb} {event_type.__wire_name__} ({module}.{event_type.__qualname__}), "
                        f"which no module under `contracts:` exposes: add {module} to contracts",
                    )
                )
    return problems
