"""Run a set of worker processes and keep them running.

A process that exits unexpectedly is restarted with exponential backoff
(reset once it has stayed up for a while). On stop, every process gets
SIGTERM and time to drain; stragglers get SIGKILL (their unacked messages are
requeued by the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("fleet.supervisor")

MAX_RESTART_DELAY = 30.0
#: A process that stayed up this long is considered healthy again.
STABLE_AFTER = 60.0


@dataclass
class Child:
    """One supervised process: its command and restart history."""

    name: str
    command: Sequence[str]
    #: Added to the supervisor's environment for this child.
    env: Mapping[str, str] | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    failures: int = field(default=0)


class Supervisor:
    """Keeps `children` running until `stop()`.

    Args:
        children: the processes to run.
        stop_timeout: seconds each child gets to drain after SIGTERM.
    """

    def __init__(self, children: Sequence[Child], *, stop_timeout: float = 35.0):
        self.children = list(children)
        self.stop_timeout = stop_timeout
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Begin a graceful stop of every child."""
        self._stopping.set()

    async def run(self) -> None:
        """Start every child, restart the ones that die, return once all have stopped."""
        watchers = [asyncio.create_task(self._watch(child)) for child in self.children]
        await self._stopping.wait()
        await asyncio.gather(*(self._terminate(child) for child in self.children))
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def _watch(self, child: Child) -> None:
        while not self._stopping.is_set():
            # A session of its own: a Ctrl-C on the terminal reaches the supervisor
            # only, which then stops each child once, gracefully.
            child.process = await asyncio.create_subprocess_exec(
                *child.command,
                start_new_session=True,
                env={**os.environ, **child.env} if child.env else None,
            )
            child.started_at = time.monotonic()
            log.info(
                "process.started",
                process=child.name,
                pid=child.process.pid,
                restarts=child.restarts,
            )
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            uptime = time.monotonic() - child.started_at
            child.failures = 1 if uptime > STABLE_AFTER else child.failures + 1
            delay = min(MAX_RESTART_DELAY, 2 ** (child.failures - 1))
            log.warning(
                "process.exited",
                process=child.name,
                code=code,
                uptime=round(uptime, 1),
                restart_in=delay,
            )
            child.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _terminate(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("process.killed", process=child.name, pid=process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def fleet_command(
    log_format: str, topology_file: str | None, url: str, *arguments: str
) -> list[str]:
    """A `fleet ... --url URL [--file FILE]` command line in this interpreter."""
    command = [sys.executable, "-m", "workers.cli", "--log-format", log_format, *arguments]
    command += ["--url", url]
    if topology_file:
        command += ["--file", topology_file]
    return command


def process_command(command: Sequence[str], log_format: str) -> list[str]:
    """A topology `processes` entry's command line: ``fleet ...`` runs this fleet's
    own CLI in this interpreter (so a venv's fleet need not be on PATH)."""
    if command and command[0] == "fleet":
        return [sys.executable, "-m", "workers.cli", "--log-format", log_format, *command[1:]]
    return list(command)


def worker_command(
    name: str,
    topology_file: str | None,
    url: str,
    log_format: str,
    metrics_port: int | None = None,
) -> list[str]:
    """The `fleet worker run` command line for one worker process."""
    command = fleet_command(log_format, topology_file, url, "worker", "run", name)
    if metrics_port is not None:
        command += ["--metrics-port", str(metrics_port)]
    return command


def webhooks_command(topology_file: str | None, url: str, log_format: str) -> list[str]:
    """The `fleet webhooks run` command line: every subscription in one process."""
    return fleet_command(log_format, topology_file, url, "webhooks", "run")


def outbox_command(
    topology_file: str | None, url: str, log_format: str, metrics_port: int
) -> list[str]:
    """The `fleet outbox run` command line (its database from the topology's
    `outbox.database_env`)."""
    return fleet_command(
        log_format, topology_file, url, "outbox", "run", "--metrics-port", str(metrics_port)
    )


def ingress_command(topology_file: str | None, url: str, log_format: str, port: int) -> list[str]:
    """The `fleet ingress run` command line, listening on 127.0.0.1:`port`."""
    return fleet_command(log_format, topology_file, url, "ingress", "run", "--port", str(port))
