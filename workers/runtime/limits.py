"""A worker's rate limits (`rate`, `burst`, `handler_rates` in the topology) as token
buckets on the monotonic clock, asked once per delivery before its handler runs.

The worker's bucket and its handler's are both taken from and the longer wait
is kept: a handler limit narrows the worker's, it does not widen it. Limits are
per process: replicas each keep their own (docs/concepts/flow-control.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from topology.model import WorkerSpec
from workers.runtime.bucket import TokenBucket


class Limits:
    """The worker's bucket (if any) and its handlers' by contract wire name."""

    __slots__ = ("_clock", "_handlers", "_worker")

    def __init__(
        self,
        worker: TokenBucket | None,
        handlers: Mapping[str, TokenBucket],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._worker = worker
        self._handlers = dict(handlers)
        self._clock = clock

    @classmethod
    def of(cls, spec: WorkerSpec) -> Limits | None:
        """The limits `spec` declares; None when it declares none (the plain path)."""
        if spec.rate is None and not spec.handler_rates:
            return None
        now = time.monotonic()
        worker = (
            None if spec.rate is None else TokenBucket(spec.rate.per_second, spec.burst, now=now)
        )
        handlers = {
            name: TokenBucket(limit.rate.per_second, limit.burst, now=now)
            for name, limit in spec.handler_rates.items()
        }
        return cls(worker, handlers)

    @property
    def handlers(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def wait(self, wire_name: str) -> float:
        """Take a turn for a call of the handler of `wire_name`; seconds to wait first."""
        now = self._clock()
        wait = 0.0 if self._worker is None else self._worker.take(now)
        bucket = self._handlers.get(wire_name)
        if bucket is not None:
            wait = max(wait, bucket.take(now))
        return wait


def unknown_handlers(name: str, spec: WorkerSpec, handled: Iterable[str]) -> str | None:
    """The problem with a `handler_rates` entry no handler of the worker takes (a typo
    would otherwise limit nothing, silently); None when every entry is one."""
    known = set(handled)
    for wire_name in spec.handler_rates:
        if wire_name not in known:
            return (
                f"workers.{name}.handler_rates.{wire_name}: worker {name!r} has no handler "
                f"for {wire_name} (handles: {', '.join(sorted(known)) or 'nothing'})"
            )
    return None
