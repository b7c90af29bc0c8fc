"""How big a run is: the default run (steady state, under 10 minutes) and --quick (a smoke test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sizes:
    """Messages and seconds per measurement.

    Attributes:
        drain: messages pre-filled for each drain measurement (the classic and the
            quorum queue).
        saga: messages pre-filled for each saga-step measurement.
        warmup: of those, the first messages a drain or saga-step contender handles
            before its clock starts (untimed: start-up, connecting, caches and
            buffers filling), the same for every contender.
        latency_rates: offered loads of the latency scenario, msg/s.
        latency_seconds: how long the paced publisher runs per measurement.
        publish: messages each publisher sends with confirms.
        rss_idle_seconds: how long a latency consumer is watched idling before its load.
        inbox: messages per drain with and without the PostgreSQL inbox.
        outbox: producer transactions per measurement, with and without the outbox.
        replay: events in the stream `fleet stream replay` publishes into a queue.
        observe: messages per drain of the observed-drain scenario.
        scale: messages per measurement of the scale scenario.
        stream: events each contender of the stream drain reads (and the quorum queue holds).
    """

    drain: int
    saga: int
    latency_rates: tuple[int, ...]
    latency_seconds: float
    publish: int
    rss_idle_seconds: float
    inbox: int
    outbox: int
    replay: int
    warmup: int
    observe: int
    scale: int
    stream: int


# Drains and saga steps measure steady state: 100,000 messages each, the first
# 10,000 untimed. Those sizes are what a default run is for; it fits in 10
# minutes by its rounds (STEADY_ROUNDS) and by leaving the other scenarios to
# --all or --only (DEFAULT_SCENARIOS), never by smaller drains.
DEFAULT = Sizes(
    drain=100_000,
    saga=100_000,
    warmup=10_000,
    latency_rates=(1000, 3000),
    latency_seconds=4.0,
    publish=15_000,
    rss_idle_seconds=1.0,
    inbox=10_000,
    outbox=10_000,
    replay=50_000,
    observe=20_000,
    scale=20_000,
    stream=200_000,
)
# Starting a fleet or FastStream process costs ~0.8 s of imports (overlapped
# with the pre-fill, but still longer), so --quick keeps every measurement short.
QUICK = Sizes(
    drain=2_500,
    saga=800,
    warmup=200,
    latency_rates=(1000, 3000),
    latency_seconds=0.5,
    publish=2_000,
    rss_idle_seconds=0.3,
    inbox=1_500,
    outbox=1_500,
    replay=10_000,
    observe=2_500,
    scale=2_500,
    stream=10_000,
)
DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 3
#: Rounds of the drain and saga-step scenarios (each measurement is 100,000 messages).
STEADY_ROUNDS = 3


@dataclass(frozen=True)
class Config:
    """One run's settings, parsed once from the command line.

    Attributes:
        sizes: DEFAULT or QUICK.
        rounds: rounds per scenario (each contender once per round).
        steady_rounds: rounds of the drain and saga-step scenarios.
        scenarios: the scenarios to run, in order.
        amqp_url: the broker; the run creates and deletes its own vhost on it.
        management_url: the broker's management API.
        database_url: PostgreSQL for the inbox scenario (a database is created in it).
        json_path: where the results go.
        command: the command line, as the report prints it.
        quick: a --quick run: its report says its figures are a smoke test.
        extras: run the informational contenders too (fleet public API, aio-pika on
            uvloop): --extras or --all.
        cluster_url: the nodes of a cluster for the scale scenario (comma-separated), if any.
        cluster_management_url: that cluster's management API (default: node 1's port + 10000).
        profile: contenders whose processes py-spy samples (collapsed stacks in the
            run's profile directory).
    """

    sizes: Sizes
    rounds: int
    scenarios: tuple[str, ...]
    amqp_url: str
    management_url: str
    database_url: str
    json_path: Path
    command: str
    steady_rounds: int = STEADY_ROUNDS
    quick: bool = False
    extras: bool = True
    cluster_url: str | None = None
    cluster_management_url: str | None = None
    profile: frozenset[str] = frozenset()
