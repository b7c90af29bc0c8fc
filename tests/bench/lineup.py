"""Who competes: each contender as the table names it, the process it runs and its loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.bench.protocol import Job


@dataclass(frozen=True)
class Entrant:
    """A contender as the parent runs it.

    Attributes:
        label: its name in the table.
        contender: the child's contender key (`child.CONTENDERS`).
        loop: the event loop its process runs on.
        extra: informational, left out of --quick runs.
        fastpath: fleet's fast path on (False: aiormq's public API only).
    """

    label: str
    contender: str
    loop: str = "asyncio"
    extra: bool = False
    fastpath: bool = True

    def job(self, **fields: Any) -> Job:
        return Job(contender=self.contender, loop=self.loop, fastpath=self.fastpath, **fields)


# fleet runs on uvloop through workers.runtime.loop.run, as `fleet worker run` does.
FLEET = Entrant("fleet", "fleet", "uvloop")
# The same runtime as users start it: `fleet worker run drain --file <bench topology>`
# (no database, metrics off), a process of its own that the bench stops with SIGTERM.
FLEET_CLI = Entrant("fleet worker run", "fleet-cli", "uvloop")
# The same runtime on aiormq's public API only (FLEET_AMQP_FASTPATH=0): what the
# fast path (workers/runtime/fastpath) is worth.
FLEET_PUBLIC_API = Entrant("fleet public API", "fleet", "uvloop", extra=True, fastpath=False)
# The baseline: what a careful user writes with aio-pika, on the default loop.
AIO_PIKA = Entrant("aio-pika", "aio-pika")
# The same code on uvloop, to show how much of a difference is the loop alone.
AIO_PIKA_UVLOOP = Entrant("aio-pika+uvloop", "aio-pika", "uvloop", extra=True)
# FastStream runs on uvloop, as `faststream run` does when uvloop is installed.
FASTSTREAM = Entrant("faststream", "faststream", "uvloop")

# The ceiling: librabbitmq in C, acking each delivery, decoding nothing (drain only;
# left out with a note where it cannot be built).
C_CLIENT = Entrant("C client", "c-client", "native")

BASELINE = AIO_PIKA.label


def running(entrants: Sequence[Entrant], *, extras: bool) -> list[Entrant]:
    """The entrants of a run: all of them, or without the informational ones."""
    return [e for e in entrants if extras or not e.extra]
