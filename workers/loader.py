"""Find a worker's code from its topology entry."""

from __future__ import annotations

import importlib

from contracts import Registry
from topology import Problem, Topology, WorkerSpec
from workers.errors import WorkerNotFound
from workers.project import register_contracts, searched
from workers.worker import Worker


def load_worker(name: str, spec: WorkerSpec) -> Worker:
    """Import `spec.module` and return its Worker named `name`.

    Raises:
        WorkerNotFound: the module cannot be imported or holds no such Worker.
    """
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise WorkerNotFound(
            f"worker {name!r}: cannot import {spec.module!r} ({exc}); searched {searched()}: "
            f"run fleet in the project's directory, or fix workers.{name}.module"
        ) from exc
    found = [w for w in vars(module).values() if isinstance(w, Worker)]
    for worker in found:
        if worker.name == name:
            return worker
    names = ", ".join(repr(w.name) for w in found) or "none"
    raise WorkerNotFound(
        f"worker {name!r}: module {spec.module!r} defines no Worker({name!r}) (found: {names})"
    )


def load_workers(topology: Topology) -> tuple[dict[str, Worker], list[Problem]]:
    """Each importable worker of the topology, and a problem for each that is not
    (its module missing, holding no such Worker, or raising on import)."""
    workers: dict[str, Worker] = {}
    problems: list[Problem] = []
    for name, spec in topology.workers.items():
        path = f"workers.{name}.module"
        try:
            workers[name] = load_worker(name, spec)
        except LookupError as exc:  # WorkerNotFound: no such module, or no such Worker in it
            problems.append(Problem(path, str(exc)))
        except Exception as exc:
            # The module is the user's code: whatever it raises on import is a finding.
            problems.append(
                Problem(path, f"importing {spec.module!r} failed: {type(exc).__name__}: {exc}")
            )
    return workers, problems


def load_exception_classes(
    name: str, dotted: list[str], setting: str = "permanent_errors"
) -> tuple[type[BaseException], ...]:
    """Resolve `permanent_errors` (or `transient_errors`) entries such as
    ``decimal.InvalidOperation``.

    Raises:
        WorkerNotFound: an entry does not name an importable exception class.
    """
    classes: list[type[BaseException]] = []
    for i, path in enumerate(dotted):
        module_name, _, attribute = path.rpartition(".")
        found = None
        if module_name:
            try:
                found = getattr(importlib.import_module(module_name), attribute, None)
            except ImportError:
                found = None
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise WorkerNotFound(
                f"workers.{name}.{setting}[{i}]: {path!r} is not an importable exception class"
            )
        classes.append(found)
    return tuple(classes)


def import_contracts(topology: Topology) -> Registry:
    """Register the fleet's contracts (see `workers.project`) and return the registry:
    for commands that take events by wire name (`publish`, the ingress, `contracts`).

    Raises:
        WorkerNotFound: the topology lists no `contracts` modules and a worker's
            module, whose handlers' contracts then count, cannot be imported.
        ContractError: a listed contracts module cannot be imported.
    """
    workers = None
    if not topology.contracts:
        workers = {name: load_worker(name, spec) for name, spec in topology.workers.items()}
    return register_contracts(topology, workers)
