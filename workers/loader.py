"""Find a worker's code from its topology entry."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys

from topology import WorkerSpec, load
from workers.errors import WorkerNotFound
from workers.worker import Worker


def load_worker(name: str, spec: WorkerSpec) -> Worker:
    """Import `spec.module` and return its Worker named `name`.

    Raises:
        WorkerNotFound: the module cannot be imported or holds no such Worker.
    """
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise WorkerNotFound(f"worker {name!r}: cannot import {spec.module!r} ({exc})") from exc
    found = [w for w in vars(module).values() if isinstance(w, Worker)]
    for worker in found:
        if worker.name == name:
            return worker
    names = ", ".join(repr(w.name) for w in found) or "none"
    raise WorkerNotFound(
        f"worker {name!r}: module {spec.module!r} defines no Worker({name!r}) (found: {names})"
    )


def load_exception_classes(name: str, dotted: list[str]) -> tuple[type[BaseException], ...]:
    """Resolve `permanent_errors` entries such as ``decimal.InvalidOperation``.

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
                f"workers.{name}.permanent_errors[{i}]: {path!r} is not an importable "
                "exception class"
            )
        classes.append(found)
    return tuple(classes)


def import_contracts(topology_file: str | None) -> None:
    """Register the reference contracts and those the topology's workers import.

    For commands that take events by wire name (`publish`, `ingress`); a worker
    module that fails to import is left out, not fatal.
    """
    import contracts.fulfilment  # noqa: F401

    sys.path.insert(0, os.getcwd())
    with contextlib.suppress(Exception):
        topology = load(topology_file)
        for name, spec in topology.workers.items():
            with contextlib.suppress(Exception):
                load_worker(name, spec)
