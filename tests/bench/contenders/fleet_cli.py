"""fleet as users start it: `fleet worker run NAME --file TOPOLOGY` (no database, metrics off).

The parent half (`command`) starts the CLI on the bench topology's worker for
the job's role, after the queue is filled: the CLI has no handshake, it
consumes as soon as it is up, and its start-up falls inside the warm-up. The
child half (`probe_from_environment`) runs inside that process: the bench's
worker module builds its Probe from `FLEET_BENCH_PROBE` (the Job as JSON),
and the Probe prints the result line on stdout when the last message is
handled; the parent then stops the process with SIGTERM, as an operator does,
and the runtime drains its in-flight work and sends its last acks. Its clock
therefore ends at the last handler call, not the last ack (a few ms in a
100,000-message drain).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.bench import layout
from tests.bench.command import ROOT, Command
from tests.bench.probe import Probe, now
from tests.bench.protocol import RESULT, Job, decode_job, encode_job, encode_outcome

KEY = "fleet-cli"
ENV = "FLEET_BENCH_PROBE"


def command(job: Job, topology_file: Path) -> Command:
    """`fleet worker run` for `job` (the console script beside this interpreter)."""
    script = Path(sys.executable).with_name("fleet")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "workers.cli"]
    argv += [
        "worker",
        "run",
        layout.WORKERS[job.role],
        "--file",
        str(topology_file),
        "--url",
        job.url,
        "--metrics-port",
        "0",  # metrics off, as every other fleet row runs
    ]
    env = {**os.environ, ENV: encode_job(job), "PYTHONPATH": str(ROOT)}
    env.pop("FLEET_DATABASE_URL", None)  # no database: the in-memory inbox
    if not job.fastpath:
        env["FLEET_AMQP_FASTPATH"] = "0"
    return Command(argv, env, handshake=False)


def probe_from_environment() -> Probe:
    """The Probe of a `fleet worker run` process started by `command`; an inert
    Probe anywhere else (the in-process contender replaces it)."""
    spec = os.environ.get(ENV)
    if not spec:
        return Probe(0)
    job = decode_job(spec)
    probe = Probe(job.expected, warmup=job.warmup_messages)

    def say_result() -> None:
        sys.stdout.write(RESULT + encode_outcome(probe.outcome(*now())) + "\n")
        sys.stdout.flush()

    probe.on_done = say_result
    return probe
