"""Helpers for testing fleet workers against a real broker.

    with WorkerProcess("inventory", topology_file=path, url=url) as worker:
        publish(...)
        messages = await collect(url, "out", count=10)

`WorkerProcess` runs `fleet worker run` as a real process and returns once it
consumes; `collect` waits for messages on a queue instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aio_pika


class WorkerProcess:
    """A `fleet worker run NAME` subprocess with JSON logs captured.

    Args:
        name: the worker's name in the topology.
        topology_file: the topology file it reads.
        url: the broker URL (with the test's vhost).
        pythonpath: folders to put on PYTHONPATH (where the worker module lives).
        args: extra `worker run` options, e.g. ``["--prefetch", "10"]``; without
            ``--metrics-port`` the process serves no metrics (tests run many at once).
        env: extra environment variables.
    """

    def __init__(
        self,
        name: str,
        *,
        topology_file: str | os.PathLike[str],
        url: str,
        pythonpath: Sequence[str | os.PathLike[str]] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.command = [
            sys.executable,
            "-m",
            "workers.cli",
            "--log-format",
            "json",
            "worker",
            "run",
            name,
            "--file",
            str(topology_file),
            "--url",
            url,
            *args,
        ]
        if "--metrics-port" not in args:
            self.command += ["--metrics-port", "0"]
        root = Path(__file__).resolve().parent.parent
        paths = [str(p) for p in pythonpath] + [str(root)]
        self.env = {
            **os.environ,
            **(env or {}),
            "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
        }
        self.logs: list[dict[str, Any]] = []
        self.output: list[str] = []
        #: The log event that says the process consumes.
        self.ready_event = "worker.consuming"
        self._consuming = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self, timeout: float = 30.0) -> Self:
        """Start the process and wait until it consumes (or fail with its output)."""
        self._consuming.clear()
        self._process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._consuming.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._join_reader()
                raise RuntimeError(
                    f"worker {self.name} did not start (exit {self._process.poll()}):\n"
                    + "\n".join(self.output[-20:])
                )
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the exit code."""
        process = self._process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        self._join_reader()
        return code

    def wait(self, seconds: float) -> int | None:
        """Wait up to `seconds` for the process to exit by itself; its exit code, or None."""
        if self._process is None:
            return None
        try:
            code = self._process.wait(seconds)
        except subprocess.TimeoutExpired:
            return None
        self._join_reader()
        return code

    def kill(self) -> None:
        """SIGKILL: the process dies mid-flight, as in a crash."""
        self.stop(signal.SIGKILL)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines with this event name (``message.dead_lettered``, …)."""
        return [line for line in self.logs if line.get("event") == name]

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            self.output.append(raw.rstrip())
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.logs.append(line)
            if line.get("event") == self.ready_event:
                self._consuming.set()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WebhooksProcess(WorkerProcess):
    """A `fleet webhooks run [NAME...]` subprocess; starts once every subscription consumes.

    Args:
        names: the subscriptions (default: all of the file's).
        topology_file, url, env, args: as for `WorkerProcess`.
    """

    def __init__(
        self,
        *names: str,
        topology_file: str | os.PathLike[str],
        url: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ):
        super().__init__("webhooks", topology_file=topology_file, url=url, env=env)
        self.command = [
            sys.executable,
            "-m",
            "workers.cli",
            "--log-format",
            "json",
            "webhooks",
            "run",
            *names,
            "--file",
            str(topology_file),
            "--url",
            url,
            *args,
        ]
        self.ready_event = "webhooks.consuming"


@dataclass(frozen=True)
class Received:
    """A message taken off a queue by `collect`."""

    body: bytes
    type: str | None
    message_id: str | None
    correlation_id: str | None
    headers: dict[str, Any]
    routing_key: str | None
    redelivered: bool

    def json(self) -> Any:
        return json.loads(self.body)


async def collect(url: str, queue: str, count: int, *, seconds: float = 30.0) -> list[Received]:
    """Consume and ack messages from `queue` until `count` arrived or `seconds` passed.

    Returns what arrived (fewer than `count` on timeout, so the caller's assertion
    says what was missing).
    """
    received: list[Received] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        source = await channel.get_queue(queue, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.append(
                Received(
                    body=message.body,
                    type=message.type,
                    message_id=message.message_id,
                    correlation_id=message.correlation_id,
                    headers=dict(message.headers),
                    routing_key=message.routing_key,
                    redelivered=bool(message.redelivered),
                )
            )
            await message.ack()
            if len(received) >= count:
                done.set()

        if count > 0:
            await source.consume(on_message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), seconds)
    finally:
        await connection.close()
    return received


async def queue_depth(url: str, queue: str) -> int:
    """Ready messages in `queue` right now (passive declare)."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await connection.close()


async def rabbitmqctl(*commands: str) -> None:
    """Run `rabbitmqctl COMMAND` for each command in turn (``"stop_app"``,
    ``"start_app"``, ``"await_startup"``), failing on the first that fails."""
    for command in commands:
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl", command,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        if await process.wait() != 0:
            raise RuntimeError(f"rabbitmqctl {command} failed")
