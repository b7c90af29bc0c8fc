"""The console's audit log: who did what, when, to how many messages. Append-only.

Stored in PostgreSQL (table `fleet_console_audit`) when the console has a
database URL: the fleet's database is already where its timelines live, every
console replica then writes to one log, and a trigger refuses UPDATE, DELETE
and TRUNCATE, so not even a bug in the console can rewrite history. Without a
database it is a JSONL file (one object a line, opened for appending only,
flushed and fsynced per entry): readable with `jq`, and enough for one
operator on a laptop. The console has no page or request that edits either.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg


@dataclass(frozen=True)
class Entry:
    """One action taken from the console."""

    at: datetime
    who: str
    role: str
    action: str  # replay | replay-edited | discard | purge
    queue: str
    count: int
    detail: dict[str, Any]


class AuditLog(Protocol):
    """Where entries go; `recent` is what the audit page shows."""

    where: str

    async def append(self, entry: Entry) -> None: ...

    async def recent(self, limit: int = 200) -> list[Entry]: ...


class JsonlAudit:
    """One JSON object per line in a file opened for appending only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"file {path}"
        self._lock = asyncio.Lock()

    async def append(self, entry: Entry) -> None:
        line = json.dumps({**asdict(entry), "at": entry.at.isoformat()}, default=str)
        async with self._lock:
            await asyncio.to_thread(self._write, line)

    def _write(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
            file.flush()
            os.fsync(file.fileno())

    async def recent(self, limit: int = 200) -> list[Entry]:
        return await asyncio.to_thread(self._read, limit)

    def _read(self, limit: int) -> list[Entry]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as file:
            lines = deque(file, maxlen=limit)
        entries = []
        for line in reversed(lines):
            raw = json.loads(line)
            raw["at"] = datetime.fromisoformat(raw["at"])
            entries.append(Entry(**raw))
        return entries


_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_console_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    who text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    queue text NOT NULL,
    count integer NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE OR REPLACE FUNCTION fleet_console_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'fleet_console_audit is append-only';
END $$;
DROP TRIGGER IF EXISTS fleet_console_audit_append_only ON fleet_console_audit;
CREATE TRIGGER fleet_console_audit_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON fleet_console_audit
    FOR EACH STATEMENT EXECUTE FUNCTION fleet_console_audit_append_only();
"""


class PostgresAudit:
    """Rows of `fleet_console_audit`, which a trigger keeps append-only."""

    where = "PostgreSQL table fleet_console_audit"

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def install(self) -> None:
        # Two consoles starting together must not race on CREATE.
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_console'))")
            await connection.execute(_SCHEMA)

    async def append(self, entry: Entry) -> None:
        await self._pool.execute(
            "INSERT INTO fleet_console_audit (at, who, role, action, queue, count, detail) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
            entry.at, entry.who, entry.role, entry.action, entry.queue, entry.count,
            json.dumps(entry.detail, default=str),
        )  # fmt: skip

    async def recent(self, limit: int = 200) -> list[Entry]:
        rows = await self._pool.fetch(
            "SELECT at, who, role, action, queue, count, detail FROM fleet_console_audit "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [Entry(**{**dict(r), "detail": json.loads(r["detail"])}) for r in rows]


def now() -> datetime:
    return datetime.now(UTC)
