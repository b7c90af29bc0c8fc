"""The parent side of a contender process: start it, hand-shake, read its Outcome.

The child's stderr goes to a log file; when a child fails, its last lines are
in the error. A child is `python -m tests.bench.child JOB` unless a `Command`
says otherwise (the C client; `fleet worker run`, which has no handshake: it
starts consuming at once, prints its result line, and is stopped with
SIGTERM). `RssSampler` watches a child's resident set with psutil; with a
profile path, py-spy samples the child from start to exit (collapsed stacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from tests.bench.command import ROOT, Command
from tests.bench.protocol import CONSUMING, GO, READY, RESULT, Job, Outcome, decode_outcome
from tests.bench.protocol import encode_job as _encode_job


def py_spy() -> str | None:
    """The py-spy executable: beside this interpreter (uv pip install py-spy), or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class ChildFailed(Exception):
    """A contender process exited, said something unexpected, or took too long."""


class Child:
    """One contender process.

    Args:
        job: what it runs.
        log: where its stderr goes.
        profile: where py-spy writes the child's collapsed stacks; None: no profile.
        command: what runs (default: ``python -m tests.bench.child JOB``).
    """

    def __init__(
        self, job: Job, log: Path, profile: Path | None = None, command: Command | None = None
    ):
        self.job = job
        self.log = log
        self.profile = profile
        self.command = command or Command(
            [sys.executable, "-m", "tests.bench.child", _encode_job(job)],
            None if job.fastpath else {**os.environ, "FLEET_AMQP_FASTPATH": "0"},
        )
        self._process: asyncio.subprocess.Process | None = None
        self._profiler: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    async def start(self) -> None:
        with self.log.open("ab") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                *self.command.argv,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=None if self.command.env is None else dict(self.command.env),
            )
        executable = py_spy()
        if self.profile is not None and executable is not None:
            self._profiler = await asyncio.create_subprocess_exec(
                executable,
                "record",
                "--pid",
                str(self._process.pid),
                "--nonblocking",  # sampling must not slow the contender down
                "--rate",
                "1000",
                "--format",
                "raw",
                "--output",
                str(self.profile),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )

    async def ready(self, seconds: float = 60.0) -> None:
        """Wait until it has imported and set up everything it needs."""
        await self._expect(READY, seconds)

    def go(self) -> None:
        """Let it start (connect, consume or publish); nothing for a child without handshake."""
        assert self._process is not None
        assert self._process.stdin is not None
        if self.command.handshake:
            self._process.stdin.write((GO + "\n").encode())

    async def consuming(self, seconds: float = 30.0) -> None:
        """Wait until its consumer is registered with the broker."""
        await self._expect(CONSUMING, seconds)

    async def result(self, seconds: float) -> Outcome:
        """Its Outcome, once it is done (within `seconds`)."""
        line = await self._line(seconds)
        while line == CONSUMING:
            line = await self._line(seconds)
        if not line.startswith(RESULT):
            raise self._failed(f"expected a result, got {line!r}")
        outcome = decode_outcome(line[len(RESULT) :])
        assert self._process is not None
        if not self.command.handshake:
            # `fleet worker run` drains in flight work and sends its last acks on SIGTERM.
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), 30)
            except TimeoutError:
                raise self._failed("did not stop within 30 s of SIGTERM") from None
            if self._process.returncode != 0:
                raise self._failed(f"exited with code {self._process.returncode} on SIGTERM")
            return outcome
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), 10)
        return outcome

    async def stop(self) -> None:
        """Kill it if it still runs, and reap it."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        if self._profiler is not None:
            # py-spy writes its file once the process it samples is gone.
            try:
                await asyncio.wait_for(self._profiler.wait(), 30)
            except TimeoutError:
                self._profiler.kill()
                await self._profiler.wait()

    async def _expect(self, wanted: str, seconds: float) -> None:
        line = await self._line(seconds)
        if line != wanted:
            raise self._failed(f"expected {wanted!r}, got {line!r}")

    async def _line(self, seconds: float) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            raw = await asyncio.wait_for(self._process.stdout.readline(), seconds)
        except TimeoutError:
            raise self._failed(f"no answer within {seconds:.0f} s") from None
        if not raw:
            await self._process.wait()
            raise self._failed(f"exited with code {self._process.returncode}")
        return raw.decode().rstrip("\n")

    def _failed(self, what: str) -> ChildFailed:
        try:
            tail = self.log.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            tail = []
        job = self.job
        lines = [f"{job.contender} ({job.role}, {job.loop}) {what}; log {self.log}", *tail]
        return ChildFailed("\n    ".join(lines))


class RssSampler:
    """Samples a process's resident set size every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02):
        # The bench group's; imported when measuring, so that the bench's modules
        # import without it (its unit tests run with the dev group only).
        import psutil  # type: ignore[import-untyped]  # no stubs in the dev group

        self._error: type[Exception] = psutil.Error
        self._process = psutil.Process(pid)
        self._interval = interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    def reset(self) -> int:
        """The peak so far; sampling goes on from zero."""
        peak, self.peak = self.peak, 0
        self._take()
        return peak

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.peak

    def _take(self) -> None:
        with contextlib.suppress(self._error):
            self.peak = max(self.peak, self._process.memory_info().rss)

    async def _sample(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(self._interval)
