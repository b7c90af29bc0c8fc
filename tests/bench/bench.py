"""One run's context: the vhost's queues, the child processes, progress lines.

Scenarios call `drain` (pre-fill, then time a consumer emptying the queue) or
`spawn` and the Queues for flows of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench import layout
from tests.bench.broker import Queues
from tests.bench.command import Command
from tests.bench.config import Config
from tests.bench.contenders import cclient, fleet_cli
from tests.bench.process import Child, ChildFailed, RssSampler
from tests.bench.protocol import Job, Outcome
from tests.bench.results import Skipped

#: A drain whose queue depth has not moved for this long has stalled.
STALL_SECONDS = 10.0


@dataclass(frozen=True)
class Drained:
    """A drain measurement: what the contender reported, and its peak RSS (bytes)."""

    outcome: Outcome
    rss_peak: int


class Bench:
    """What every scenario needs.

    Args:
        config: the run's settings.
        url: the AMQP URL of the run's vhost.
        queues: housekeeping connection to that vhost.
        log_dir: where the children's stderr goes.
        profile_dir: where profiled children's stacks go (`--profile`).
    """

    def __init__(
        self,
        config: Config,
        url: str,
        queues: Queues,
        log_dir: Path,
        profile_dir: Path | None = None,
    ):
        self.config = config
        self.profile_dir = profile_dir
        self.url = url
        self.queues = queues
        self.log_dir = log_dir
        self._started = time.monotonic()
        self._tags = itertools.count(1)
        #: Contenders left out of a scenario that ran (the report lists them as skipped).
        self.notes: list[Skipped] = []
        self._c_client: Path | cclient.Unavailable | None = None

    def progress(self, text: str) -> None:
        """One line on stderr, with the time since the run started."""
        print(f"[bench {time.monotonic() - self._started:5.0f}s] {text}", file=sys.stderr)

    def tag(self) -> str:
        """A fresh message-id prefix, so no two measurements share an id."""
        return f"m{next(self._tags):04d}"

    @staticmethod
    def timeout(messages: int) -> float:
        """Generous: a contender slower than 500 msg/s is broken, not slow."""
        return 30.0 + messages / 500

    async def c_client(self) -> Path:
        """The C-client ceiling's binary, built once a run.

        Raises:
            cclient.Unavailable: it cannot be built here (the reason in one line).
        """
        if self._c_client is None:
            try:
                self._c_client = await cclient.build()
            except cclient.Unavailable as exc:
                self._c_client = exc
        if isinstance(self._c_client, cclient.Unavailable):
            raise self._c_client
        return self._c_client

    def topology_file(self) -> Path:
        """The bench topology as a file, for `fleet worker run --file`."""
        path = self.log_dir / "bench-topology.yaml"
        if not path.exists():
            path.write_text(layout.TOPOLOGY, encoding="utf-8")
        return path

    async def spawn(self, job: Job) -> Child:
        """Start a contender process (it sets up, then waits for `go`)."""
        child = self.child(job)
        await child.start()
        return child

    def child(self, job: Job) -> Child:
        """A contender process, not started yet."""
        name = f"{job.contender}-{job.role}-{job.tag}"
        profile = None
        if self.profile_dir is not None and job.contender in self.config.profile:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            profile = self.profile_dir / f"{name}.txt"
        return Child(job, self.log_dir / f"{name}.log", profile, self._command(job))

    def _command(self, job: Job) -> Command | None:
        if job.contender == fleet_cli.KEY:
            return fleet_cli.command(job, self.topology_file())
        if job.contender == cclient.KEY:
            assert isinstance(self._c_client, Path), "c_client() first"
            return cclient.command(job, self._c_client)
        return None  # python -m tests.bench.child

    async def clean(self) -> None:
        """Empty every bench queue."""
        await self.queues.purge(*layout.QUEUES)

    async def drain(self, job: Job) -> Drained:
        """Pre-fill `job.queue` with `job.expected` messages, then let the contender drain it.

        The contender process starts while the queue fills, so its imports cost
        nothing; its clock starts at its first delivery, or once its warm-up's
        messages are handled. Its resident set is sampled from `go` to its
        result. A contender without handshake (`fleet worker run`) starts once
        the queue is full: its start-up falls in its warm-up.

        Raises:
            ChildFailed: it failed, or did not consume every message.
        """
        await self.clean()
        child = self.child(job)
        sampler: RssSampler | None = None
        try:
            if child.command.handshake:
                await child.start()
                await self.queues.fill(job.queue, job.expected, tag=job.tag)
                await child.ready()
            else:
                await self.queues.fill(job.queue, job.expected, tag=job.tag)
                await child.start()
            sampler = RssSampler(child.pid)
            sampler.start()
            child.go()
            outcome = await self._unless_stalled(child, job)
        finally:
            rss_peak = await sampler.stop() if sampler is not None else 0
            await child.stop()
        left = await self.queues.depth(job.queue)
        if outcome.count != job.expected or left:
            raise ChildFailed(
                f"{job.contender} consumed {outcome.count} of {job.expected}; {left} left in queue"
            )
        return Drained(outcome, rss_peak)

    async def _unless_stalled(self, child: Child, job: Job) -> Outcome:
        """The child's outcome; fails early when its queue stops draining.

        A contender that stops consuming (a closed channel it does not notice,
        say) would otherwise hold the run until its timeout. The depth is read
        once a second: a passive declare, negligible next to the drain.
        """
        result = asyncio.ensure_future(child.result(self.timeout(job.expected)))
        depth, since = -1, time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({result}, timeout=1.0)
                if done:
                    return result.result()
                now = await self.queues.depth(job.queue)
                if now != depth:
                    depth, since = now, time.monotonic()
                elif time.monotonic() - since > STALL_SECONDS:
                    raise ChildFailed(
                        f"{job.contender} stalled: {depth} messages ready in {job.queue!r}, "
                        f"none taken for {STALL_SECONDS:.0f} s"
                    )
        finally:
            result.cancel()
