"""The `Database` Protocol (``ctx.db``): what every form of ctx.db offers, and nothing more."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy

from workers import Database
from workers.context import Context, NoDatabase, no_database
from workers.errors import DatabaseRequired
from workers.runtime import group_commit

#: What a handler may call on ctx.db.
MEMBERS = sorted(name for name in vars(Database) if not name.startswith("_"))


class TestDatabase:
    def test_it_names_the_queries_and_the_savepoint(self) -> None:
        """The Protocol is asyncpg's query methods and a nested transaction."""
        assert MEMBERS == [
            "execute",
            "executemany",
            "fetch",
            "fetchmany",
            "fetchrow",
            "fetchval",
            "transaction",
        ]

    @pytest.mark.parametrize("connection", [asyncpg.Connection, PoolConnectionProxy])
    def test_asyncpg_connections_have_every_member(self, connection: type) -> None:
        """A transaction of its own hands the handler a pooled asyncpg connection."""
        assert [name for name in MEMBERS if not callable(getattr(connection, name, None))] == []

    def test_a_batchs_shared_connection_routes_every_member_through_its_savepoint(self) -> None:
        """Group commit's ctx.db takes the batch's lock and opens the handler's savepoint
        before any query of the Protocol, and nests its transactions in that savepoint:
        a member it did not route would run outside the handler's savepoint."""
        queries = set(MEMBERS) - {"transaction"}
        assert queries <= group_commit._QUERIES


class TestNoDatabase:
    @pytest.mark.parametrize("name", MEMBERS)
    def test_every_member_says_which_worker_needs_a_database(self, name: str) -> None:
        """Whatever the handler calls, the error names the worker and the fix."""
        # Given
        ctx = Context(
            worker="ledger", queue="q", event_type="E", message_id="m", correlation_id="c"
        )
        # When / Then
        with pytest.raises(DatabaseRequired, match="worker 'ledger'"):
            getattr(ctx.db, name)

    def test_a_context_without_a_database_shares_its_workers_sentinel(self) -> None:
        """One NoDatabase per worker, not one per message; it is falsy."""
        # Given
        first, second = (
            Context(worker="ledger", queue="q", event_type="E", message_id=m, correlation_id="c")
            for m in ("m-1", "m-2")
        )
        # Then
        assert first.db is second.db is no_database("ledger")
        assert isinstance(first.db, NoDatabase)
        assert not first.db
