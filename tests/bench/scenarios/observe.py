"""g. drain with fleet's observability on vs the bench default (issue 7).

The same drain as scenario a, fleet only: "fleet" as every other scenario
runs it (no metrics, tracing off: the trace-context copy is all that is
left on the path), "fleet metrics" counting for Prometheus as `fleet worker
run` does by default (the lag poller included, the endpoint not scraped),
and "fleet metrics+tracing" with an OpenTelemetry SDK recording a span per
delivery into a batch processor whose exporter drops them (the cost of
tracing without the network).
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import Entrant
from tests.bench.protocol import Job
from tests.bench.results import Series
from tests.bench.scenarios.throughput import drain_rounds

NAME = "observed drain"
OFF = Entrant("fleet", "fleet", "uvloop")
METRICS = Entrant("fleet metrics", "fleet", "uvloop")
TRACED = Entrant("fleet metrics+tracing", "fleet", "uvloop")
MODES = {OFF.label: "", METRICS.label: "metrics", TRACED.label: "traced"}


async def run(bench: Bench) -> list[Series]:
    def job(entrant: Entrant, tag: str) -> Job:
        return entrant.job(
            role="drain",
            url=bench.url,
            queue=layout.DRAIN,
            expected=bench.config.sizes.observe,
            prefetch=layout.PREFETCH,
            tag=tag,
            observe=MODES[entrant.label],
        )

    return await drain_rounds(bench, NAME, (OFF, METRICS, TRACED), job, baseline=OFF.label)
