"""f. drain with fleet's PostgreSQL inbox (dedupe) on vs off: what deduplication costs.

The same drain as scenario a, fleet only: "inbox off" is the worker with no
database (the runtime's default, in-memory inbox); "inbox on" gives it a
database with the inbox's defaults (`commit_batch: auto`: the handler never
writes through ctx.db, so its claims share transactions); "inbox on, per
delivery" is `commit_batch: 1`, every delivery in a transaction of its own;
"inbox on, grouped" is `commit_batch: 64`. The run creates a scratch database
for it and drops it afterwards. Skipped, with the reason, when the runtime has
no PostgreSQL inbox or PostgreSQL is unreachable.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from tests.bench import layout
from tests.bench.bench import Bench
from tests.bench.lineup import Entrant
from tests.bench.protocol import Job
from tests.bench.results import Series, Skip
from tests.bench.scenarios.throughput import drain_rounds

NAME = "inbox drain"
OFF = Entrant("fleet inbox off", "fleet", "uvloop")
ON = Entrant("fleet inbox on", "fleet", "uvloop")
ALONE = Entrant("fleet inbox on, per delivery", "fleet", "uvloop")
GROUPED = Entrant("fleet inbox on, grouped", "fleet", "uvloop")

ROLES = {ALONE.label: "drain-alone", GROUPED.label: "drain-grouped"}


async def run(bench: Bench) -> list[Series]:
    from tests.bench.contenders.fleet_api import postgres_inbox_missing

    missing = postgres_inbox_missing()
    if missing:
        raise Skip(missing)
    async with scratch_database(bench.config.database_url) as database_url:

        def job(entrant: Entrant, tag: str) -> Job:
            return entrant.job(
                role=ROLES.get(entrant.label, "drain"),
                url=bench.url,
                queue=layout.DRAIN,
                expected=bench.config.sizes.inbox,
                prefetch=layout.PREFETCH,
                tag=tag,
                database_url=None if entrant is OFF else database_url,
            )

        return await drain_rounds(bench, NAME, (OFF, ON, ALONE, GROUPED), job, baseline=OFF.label)


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    """A new database on the server of `admin_url`, dropped on exit; yields its URL.

    Raises:
        Skip: PostgreSQL cannot be reached or refuses to create a database.
    """
    import asyncpg

    name = f"fleet_bench_{secrets.token_hex(4)}"
    try:
        admin = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise Skip(f"PostgreSQL is not reachable at {_safe(admin_url)}: {exc}") from None
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.PostgresError as exc:
            raise Skip(f"cannot create a scratch database: {exc}") from None
        try:
            yield urlsplit(admin_url)._replace(path="/" + name).geturl()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _safe(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
