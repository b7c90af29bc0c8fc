"""What a handler may do with ``ctx.db``: the `Database` Protocol.

``ctx.db`` is the inbox transaction's connection: what a handler writes through
it commits together with the mark that its message was processed. It is an
asyncpg connection (a transaction per delivery) or a share of one
(group commit: the handler's queries run inside a savepoint of its own), and
`NoDatabase` for a worker without a database. The Protocol is the part they
all offer, so mypy checks a handler's queries against it; nothing else of the
connection is the handler's to use (the README's "What a handler may do with
ctx.db" says why).

    @ledger.handles(OrderPlaced)
    async def book(event: OrderPlaced, ctx: Context) -> None:
        row = await ctx.db.fetchrow("SELECT balance FROM accounts WHERE id = $1", event.customer_id)
        if row is None: ...

asyncpg's own connections, pooled connections and `PoolConnectionProxy` match
it structurally; a helper that takes ``db: Database`` accepts all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # Only for the annotations: workers without a database never load the driver.
    from asyncpg import Record


class Database(Protocol):
    """The queries a handler runs in its delivery's transaction (asyncpg's signatures).

    Arguments are passed as ``$1, $2, …`` parameters, never formatted into the
    query. ``timeout`` (seconds) bounds one query, as in asyncpg.
    """

    async def execute(self, query: str, *args: object, timeout: float | None = None) -> str:
        """Run a statement; its status (``"INSERT 0 1"``)."""
        ...

    async def executemany(
        self, command: str, args: Iterable[Sequence[object]], *, timeout: float | None = None
    ) -> None:
        """Run one statement for each tuple of arguments."""
        ...

    async def fetch(self, query: str, *args: object, timeout: float | None = None) -> list[Record]:
        """Every row of a query."""
        ...

    async def fetchrow(
        self, query: str, *args: object, timeout: float | None = None
    ) -> Record | None:
        """The first row of a query; None if it returned none."""
        ...

    async def fetchval(
        self, query: str, *args: object, column: int = 0, timeout: float | None = None
    ) -> Any:
        """One value of the first row (its first column by default); None without a row."""
        ...

    async def fetchmany(
        self, query: str, args: Iterable[Sequence[object]], *, timeout: float | None = None
    ) -> list[Record]:
        """Run one statement for each tuple of arguments; the rows they returned."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """A savepoint inside the delivery's transaction (``async with``): its
        writes roll back alone if the block raises. It is always nested, so it
        takes no isolation level of its own."""
        ...
