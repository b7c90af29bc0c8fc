"""The outbox table, `fleet_outbox`, and the statements that write it.

One row is one message, stored as fleet publishes it (the columns of
`workers.runtime.outgoing.Outgoing`): exchange, routing key, ids, type,
version, headers and the JSON body. `key` is the aggregate whose events keep
their commit order (an order id, say); `created_at` is the producer's
transaction time. The relay sets `parked_at` and `reason` when the broker
cannot route a message. After the broker's confirm it *moves* the row to
`fleet_outbox_sent` (its ids, route, type and times, not its body or headers), pruned after the
relay's retention.

Why two tables: a producer's INSERT then maintains one index (the primary
key), and `fleet_outbox` holds only what is still to send, so it stays small
and cached however many rows were sent. Marking rows sent in place (an UPDATE
of an indexed column: a new row version and new entries in every index) grew
the table and its indexes under a steady load until vacuum caught up, and the
producers' commits paid for it (the outbox bench: the producer fell from
0.8x of a plain transaction in a short run to 0.6x in a long one).

Commit order per key: `add` takes a transaction-scoped advisory lock on the
key before the row's id is drawn, so two transactions adding events for one
key commit one after the other and their ids follow their commit order. The
relay publishes in id order. Transactions for different keys never wait on
each other.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.database import Database

#: The LISTEN/NOTIFY channel a commit wakes the relay on.
CHANNEL = "fleet_outbox"

#: The advisory-lock class of the per-key producer locks (two-key form, so it
#: never meets an application's own one-key advisory locks): "fo" in ASCII.
KEY_LOCK_CLASS = 0x666F
#: The advisory lock whose holder is the active relay (two-key form: class, 0).
RELAY_LOCK_CLASS = 0x666F72

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_outbox (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key            text        NOT NULL,
    exchange       text        NOT NULL,
    routing_key    text        NOT NULL,
    message_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    causation_id   text,
    type           text        NOT NULL,
    version        integer     NOT NULL,
    headers        jsonb,
    body           bytea       NOT NULL,
    app_id         text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    parked_at      timestamptz,
    reason         text
);
CREATE TABLE IF NOT EXISTS fleet_outbox_sent (
    id             bigint      PRIMARY KEY,
    key            text        NOT NULL,
    exchange       text        NOT NULL,
    routing_key    text        NOT NULL,
    message_id     text        NOT NULL,
    correlation_id text        NOT NULL,
    type           text        NOT NULL,
    version        integer     NOT NULL,
    app_id         text,
    created_at     timestamptz NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS fleet_outbox_sent_at ON fleet_outbox_sent (sent_at);
"""

#: The columns `add` writes, in the order of its parameters.
COLUMNS = (
    "key",
    "exchange",
    "routing_key",
    "message_id",
    "correlation_id",
    "causation_id",
    "type",
    "version",
    "headers",
    "body",
    "app_id",
)


def insert(lock: str, placeholders: list[str]) -> str:
    """Lock the key and insert the row, in one statement.

    The lock is taken in a CTE the INSERT selects from, so it is held before
    the identity is drawn. The statement does not NOTIFY: PostgreSQL
    serialises the commits of every transaction that notifies (a
    database-wide lock held through the commit's flush), which halves a busy
    producer's commit rate; `WAKE` wakes the relay after the commit instead.
    `lock` is the key's placeholder in the lock, `placeholders` the columns'
    (``$1`` … for asyncpg, ``%s`` for psycopg, which then takes the key twice).
    """
    values = list(placeholders)
    values[COLUMNS.index("headers")] += "::jsonb"
    return (
        f"WITH locked AS (SELECT pg_advisory_xact_lock({KEY_LOCK_CLASS}, hashtext({lock}))) "
        f"INSERT INTO fleet_outbox ({', '.join(COLUMNS)}) "
        f"SELECT {', '.join(values)} FROM locked"
    )


#: Wakes a listening relay; run after the producer's commit, outside its transaction.
WAKE = f"SELECT pg_notify('{CHANNEL}', '')"
#: `WAKE` in a transaction of its own that does not wait for its commit's flush:
#: a wake-up needs no durability, and the producer should not wait on a disk.
WAKE_UNFLUSHED = f"BEGIN; SET LOCAL synchronous_commit TO off; {WAKE}; COMMIT"


def asyncpg_placeholders(after: int = 0) -> list[str]:
    """asyncpg's placeholders for the columns, numbered from ``$after+1``."""
    return [f"${after + i}" for i in range(1, len(COLUMNS) + 1)]


#: `insert` for asyncpg.
INSERT_ASYNCPG = insert("$1", asyncpg_placeholders())
#: `insert` for psycopg (and any DB-API driver with the ``format`` paramstyle):
#: its parameters are the key, then the columns.
INSERT_FORMAT = insert("%s", ["%s"] * len(COLUMNS))


@functools.lru_cache(maxsize=256)
def with_statement(statement: str, parameters: int, *, paramstyle: str = "asyncpg") -> str:
    """`statement` (the caller's, with `parameters` parameters) with the event's
    row inserted by a data-modifying CTE of the same statement.

    asyncpg: the caller's parameters keep their numbers and the row's follow
    them (``$parameters+1`` …). ``format`` (psycopg): the CTE comes first in
    the text, so its parameters (the key, then the columns) come before the
    caller's. A statement that has a WITH clause of its own gets the CTE as
    its first entry (RECURSIVE kept in front). PostgreSQL runs both writes in
    one snapshot, and they commit, or fail, together.
    """
    body = statement.strip().rstrip(";").rstrip()
    if not body:
        raise ValueError("an empty statement")
    if paramstyle == "asyncpg":
        cte = insert(f"${parameters + 1}", asyncpg_placeholders(parameters))
    else:
        cte = INSERT_FORMAT
    match = _WITH.match(body)
    if match is None:
        return f"WITH fleet_outbox_row AS ({cte}) {body}"
    return f"{match.group(0).rstrip()} fleet_outbox_row AS ({cte}), {body[match.end() :]}"


#: A statement's own WITH clause (and RECURSIVE), to merge the outbox's CTE into.
_WITH = re.compile(r"\s*WITH(\s+RECURSIVE)?\s", re.IGNORECASE)


async def install(connection: Database) -> None:
    """Create the table and its indexes if missing (idempotent).

    Under a transaction-scoped advisory lock: `CREATE TABLE IF NOT EXISTS` run by
    two sessions at once (a relay, its gauges, an ingress starting beside it)
    fails in one of them with a duplicate pg_type key.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('fleet_outbox'))")
        await connection.execute(SCHEMA)
