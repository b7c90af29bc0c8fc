"""What the parent and a contender process exchange.

The parent starts ``python -m tests.bench.child <Job as JSON>``. The child
imports its contender, prints ``ready``, and waits for ``go`` on stdin; a
consumer prints ``consuming`` once the broker delivers to it; the last line is
``result <Outcome as JSON>``. Nothing else goes to stdout (logs go to stderr).
"""

from __future__ import annotations

import msgspec

READY = "ready"
GO = "go"
CONSUMING = "consuming"
RESULT = "result "

Role = str  # "drain" | "saga" | "latency" | "publish" | "pace"


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """One contender process's task.

    Attributes:
        contender: the registry key in `child.CONTENDERS` (``fleet``, ``aio-pika``, ...).
        role: what it does: drain, saga, latency (consumers), publish, pace (publishers).
        url: the AMQP URL, with the run's vhost.
        loop: ``asyncio`` or ``uvloop`` (contenders that choose their loop).
        queue: the queue consumed, or published to (pace, publish).
        expected: messages to consume (or publish) before the measurement ends.
        prefetch: the consumer's prefetch count.
        rates: offered loads of the latency phases, msg/s, one after the other.
        seconds: how long each latency phase lasts.
        lanes: concurrent publishes awaiting their confirms (publish).
        tag: prefix of the message ids this job publishes.
        database_url: PostgreSQL for fleet's inbox; None keeps the default inbox.
        warmup: share of the first latency samples left out of the percentiles.
        warmup_messages: drains and saga steps: messages handled before the clock
            starts (steady state: start-up, connection and cache warm-up left out).
        observe: fleet's observability: "" (the bench default: no metrics, no
            tracing), "metrics" (Prometheus counting on), "traced" (metrics and
            an OpenTelemetry SDK recording a span per delivery).
        fastpath: fleet's fast path (workers/runtime/fastpath); False runs it on
            aiormq's public API only (FLEET_AMQP_FASTPATH=0).
    """

    contender: str
    role: Role
    url: str
    loop: str = "asyncio"
    queue: str = ""
    expected: int = 0
    prefetch: int = 256
    rates: tuple[int, ...] = ()
    seconds: float = 0.0
    lanes: int = 256
    tag: str = "m"
    database_url: str | None = None
    warmup: float = 0.1
    warmup_messages: int = 0
    observe: str = ""
    fastpath: bool = True


class Outcome(msgspec.Struct, kw_only=True):
    """What a contender measured about itself.

    Attributes:
        count: messages consumed (or published).
        seconds: first delivery (or the end of the warm-up) → last ack and consumer
            cancelled (publishers: first publish → last confirm).
        cpu_seconds: this process's CPU time over the same interval.
        max_rss_kb: the process's peak resident set (getrusage).
        latency_ms: publish → handler entry, per phase: ``{"1000/s p99": 0.8, ...}``.
        extra: anything else worth keeping in the JSON.
        warmup: messages of `count` handled before the clock started (0: it started
            at the first delivery, which is then counted).
        rss_warm_kb: the resident set when the clock started (0: not measured).
        rss_end_kb: the resident set when the last message was handled.
    """

    count: int
    seconds: float
    cpu_seconds: float
    max_rss_kb: int
    latency_ms: dict[str, float] = {}
    extra: dict[str, float] = {}
    warmup: int = 0
    rss_warm_kb: int = 0
    rss_end_kb: int = 0

    @property
    def timed(self) -> int:
        """The messages inside the clock."""
        return self.count - self.warmup

    @property
    def rate(self) -> float:
        return self.timed / self.seconds if self.seconds > 0 else 0.0

    @property
    def rss_growth_kb(self) -> float | None:
        """Resident-set growth from the clock's start to the last message, in KiB
        per 10,000 messages; None when either end was not measured."""
        if not (self.rss_warm_kb and self.rss_end_kb and self.timed > 0):
            return None
        return (self.rss_end_kb - self.rss_warm_kb) * 10_000 / self.timed


def encode_job(job: Job) -> str:
    return msgspec.json.encode(job).decode()


def decode_job(text: str) -> Job:
    return msgspec.json.decode(text, type=Job)


def encode_outcome(outcome: Outcome) -> str:
    return msgspec.json.encode(outcome).decode()


def decode_outcome(text: str) -> Outcome:
    return msgspec.json.decode(text, type=Outcome)


def phases(rates: tuple[int, ...], seconds: float) -> dict[str, int]:
    """The latency phases: ``{"1000/s": messages, ...}``, in the order they are sent."""
    return {f"{rate}/s": int(rate * seconds) for rate in rates}
