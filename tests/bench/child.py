"""The child side of a contender process: ``python -m tests.bench.child JOB``.

Imports only the contender it runs, so each process's memory and start-up are
its own. See `protocol` for the lines it prints.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

from tests.bench.protocol import CONSUMING, GO, READY, RESULT, Job, Outcome, decode_job
from tests.bench.protocol import encode_outcome as _encode

T = TypeVar("T")

#: Contender key → the module whose `run(job, signals)` carries out a Job.
CONTENDERS: dict[str, str] = {
    "fleet": "tests.bench.contenders.fleet",
    "aio-pika": "tests.bench.contenders.aiopika",
    "faststream": "tests.bench.contenders.faststream",
    "pacer": "tests.bench.contenders.pacer",
    "outbox": "tests.bench.contenders.outbox",
    "rstream": "tests.bench.contenders.rstream",
}


class Signals:
    """The child's half of the handshake with the parent."""

    def ready(self) -> None:
        """Say the process is set up, then block until the parent says go."""
        _say(READY)
        line = sys.stdin.readline().strip()
        if line != GO:
            raise SystemExit(f"bench child: expected {GO!r} on stdin, got {line!r}")

    def consuming(self) -> None:
        """Say the consumer is registered with the broker."""
        _say(CONSUMING)


class Contender(Protocol):
    def run(self, job: Job, signals: Signals) -> Outcome: ...


def run_loop(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on plain asyncio or on uvloop."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.bench.child JOB_JSON", file=sys.stderr)
        return 2
    job = decode_job(argv[1])
    contender: Contender = importlib.import_module(CONTENDERS[job.contender])
    outcome = contender.run(job, Signals())
    _say(RESULT + _encode(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
