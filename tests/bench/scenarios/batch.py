"""batch: rows inserted per second into PostgreSQL by a worker with a batch handler
(`handles_batch`, the defaults: up to 500 per call, 200 ms) and one `executemany`
per call, against the same worker with `handles` and one INSERT per message.

Both write through ctx.db, in the inbox's transaction: the batch worker claims and
commits each batch once; the single one, once its handler wrote (`commit_batch:
auto`), a transaction per message. A message is a row, so the rate is rows/s; the
report's ratio is batch ÷ single. A scratch database per run, as for `inbox`.
"""

from __future__ import annotations

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import Entrant
from tests.bench.protocol import Job
from tests.bench.results import Series, Skip
from tests.bench.scenarios.inbox import scratch_database
from tests.bench.scenarios.throughput import drain_rounds

NAME = "batch insert (rows/s)"
BATCH = Entrant("fleet handles_batch + executemany", "fleet", "uvloop")
SINGLE = Entrant("fleet handles, one INSERT each", "fleet", "uvloop")
ROLES = {BATCH.label: "batch-insert", SINGLE.label: "single-insert"}


async def run(bench: Bench) -> list[Series]:
    from tests.bench.contenders.fleet_api import postgres_inbox_missing

    missing = postgres_inbox_missing()
    if missing:
        raise Skip(missing)
    async with scratch_database(bench.config.database_url) as database_url:

        def job(entrant: Entrant, tag: str) -> Job:
            return entrant.job(
                role=ROLES[entrant.label],
                url=bench.url,
                queue=layout.DRAIN,
                expected=bench.config.sizes.inbox,
                prefetch=layout.BATCH_PREFETCH,
                tag=tag,
                database_url=database_url,
            )

        return await drain_rounds(bench, NAME, (BATCH, SINGLE), job, baseline=SINGLE.label)
