"""How busy the machine was with other work while a measurement ran.

On a shared machine (other test suites, builds) a contender can lose CPU to
strangers; this makes it visible. Other load = the host's busy CPU time minus
the bench's own (this process and its reaped children: the contenders, the
paced publisher), RabbitMQ's and PostgreSQL's, over the wall time, in cores.
PostgreSQL backends that exit during the window are not subtracted (their
time counts as other load): in the inbox scenario, the inbox's connections,
closed when its worker stops, make "inbox on" read about half a core high.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

SERVICES = ("beam.smp", "postgres")


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float
    ours: float
    services: dict[int, float]


def snapshot() -> Snapshot:
    """CPU seconds used so far: by the whole host, by the bench, by each service process."""
    # The bench group's; imported when measuring, so that the bench's modules
    # import without it (its unit tests run with the dev group only).
    import psutil  # type: ignore[import-untyped]  # no stubs in the dev group

    times = psutil.cpu_times()
    busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    own = os.times()
    ours = own.user + own.system + own.children_user + own.children_system
    services: dict[int, float] = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in SERVICES:
            with contextlib.suppress(psutil.Error):
                cpu = process.cpu_times()
                services[process.pid] = cpu.user + cpu.system
    return Snapshot(time.monotonic(), busy, ours, services)


def other_load(before: Snapshot, after: Snapshot) -> float:
    """Cores used by other work between the two snapshots."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    services = sum(
        after.services[pid] - before.services[pid]
        for pid in after.services
        if pid in before.services
    )
    others = (after.busy - before.busy) - (after.ours - before.ours) - services
    return max(0.0, others / wall)
