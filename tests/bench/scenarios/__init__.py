"""The scenarios, in the order a run takes them; keys are what --only accepts.

Each is `async def run(bench) -> list[Series]`, raising `results.Skip` when it
cannot run here. A new scenario is a module here and a line below. Scenario e
(peak RSS) has no runner of its own: `drain` samples every contender's memory
under load, `latency` samples each consumer while it idles before its load.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.bench.bench import Bench
from tests.bench.results import Series
from tests.bench.scenarios import (
    batch,
    console,
    drain,
    inbox,
    latency,
    observe,
    outbox,
    publish,
    replay,
    saga,
    scale,
    streams,
)

Scenario = Callable[[Bench], Awaitable[list[Series]]]

SCENARIOS: dict[str, Scenario] = {
    "drain": drain.run,
    "saga": saga.run,
    "latency": latency.run,
    "publish": publish.run,
    "inbox": inbox.run,
    "observe": observe.run,
    "outbox": outbox.run,
    "console": console.run,
    "replay": replay.run,
    "stream": streams.run,
    "scale": scale.run,
    "batch": batch.run,
}
#: Run only when named in --only: scale starts real worker processes, and a
#: cluster if one is given, for minutes of its own.
ON_DEMAND = frozenset({"scale"})
#: The default run: the steady-state drains and saga steps (100,000 messages a
#: measurement) fill its 10 minutes; --all and --quick add every other scenario
#: but scale, --only names them.
DEFAULT_SCENARIOS = ("drain", "saga")
