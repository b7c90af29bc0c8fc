"""Where the ingress remembers caller-given ids: this process's memory, and the
PostgreSQL table every replica shares. Both answer the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from workers.ingress.dedupe import PostgresRecentIds, RecentIds, Seen, SeenIds


@pytest.fixture(params=["memory", "postgresql"])
async def seen(request: pytest.FixtureRequest, database: str) -> AsyncIterator[SeenIds]:
    if request.param == "memory":
        yield RecentIds()
        return
    store = PostgresRecentIds(database)
    await store.start()
    yield store
    await store.close()


async def test_a_repeat_after_acceptance_is_a_duplicate_and_a_changed_body_a_conflict(
    seen: SeenIds,
) -> None:
    assert await seen.begin("/hooks", "id-1", b"{}", 60) is Seen.NEW
    await seen.accepted("/hooks", "id-1")
    assert await seen.begin("/hooks", "id-1", b"{}", 60) is Seen.DUPLICATE
    assert await seen.begin("/hooks", "id-1", b'{"x": 1}', 60) is Seen.CONFLICT


async def test_a_repeat_while_publishing_is_in_progress(seen: SeenIds) -> None:
    await seen.begin("/hooks", "id-1", b"{}", 60)
    assert await seen.begin("/hooks", "id-1", b"{}", 60) is Seen.IN_PROGRESS


async def test_an_abandoned_id_can_be_published_again(seen: SeenIds) -> None:
    await seen.begin("/hooks", "id-1", b"{}", 60)
    await seen.abandon("/hooks", "id-1")
    assert await seen.begin("/hooks", "id-1", b"{}", 60) is Seen.NEW


async def test_ids_are_scoped_per_route(seen: SeenIds) -> None:
    await seen.begin("/a", "id-1", b"{}", 60)
    await seen.accepted("/a", "id-1")
    assert await seen.begin("/b", "id-1", b"{}", 60) is Seen.NEW


async def test_an_id_is_forgotten_after_its_window(seen: SeenIds) -> None:
    await seen.begin("/a", "id-1", b"{}", 0.2)
    await seen.accepted("/a", "id-1")
    assert await seen.begin("/a", "id-1", b"{}", 0.2) is Seen.DUPLICATE
    await asyncio.sleep(0.3)
    assert await seen.begin("/a", "id-1", b"{}", 0.2) is Seen.NEW


async def test_concurrent_requests_with_one_id_let_exactly_one_through(seen: SeenIds) -> None:
    results = await asyncio.gather(*(seen.begin("/a", "race", b"{}", 60) for _ in range(20)))
    assert results.count(Seen.NEW) == 1
    assert set(results) <= {Seen.NEW, Seen.IN_PROGRESS}


def test_memory_drops_the_oldest_ids_past_its_bound() -> None:
    async def run() -> tuple[Seen, Seen]:
        recent = RecentIds(max_entries=2)
        for key in ("a", "b", "c"):
            await recent.begin("/r", key, b"{}", 60)
            await recent.accepted("/r", key)
        return await recent.begin("/r", "a", b"{}", 60), await recent.begin("/r", "c", b"{}", 60)

    assert asyncio.run(run()) == (Seen.NEW, Seen.DUPLICATE)


def test_memory_bounds_each_route_on_its_own() -> None:
    """Ids flooding one route (an unauthenticated one, say) do not push another route's
    ids out of memory, where a replay would then pass."""

    async def run() -> Seen:
        recent = RecentIds(max_entries=2)
        await recent.begin("/github", "signed", b"{}", 60)
        await recent.accepted("/github", "signed")
        for key in ("a", "b", "c", "d"):
            await recent.begin("/open", key, b"{}", 60)
        return await recent.begin("/github", "signed", b"{}", 60)

    assert asyncio.run(run()) is Seen.DUPLICATE


async def test_replicas_share_the_table_and_a_dead_replicas_claim_goes_stale(
    database: str,
) -> None:
    """Two stores on one database act as two ingress replicas; a pending entry left by
    a replica that died is taken over once it is older than STALE_PENDING."""
    first, second = PostgresRecentIds(database), PostgresRecentIds(database)
    await asyncio.gather(first.start(), second.start())
    try:
        assert await first.begin("/a", "id-1", b"{}", 60) is Seen.NEW
        await first.accepted("/a", "id-1")
        assert await second.begin("/a", "id-1", b"{}", 60) is Seen.DUPLICATE
        assert await first.begin("/a", "id-2", b"{}", 60) is Seen.NEW  # then "dies"
        assert await second.begin("/a", "id-2", b"{}", 60) is Seen.IN_PROGRESS
        connection = await asyncpg.connect(database)
        try:
            await connection.execute(
                "UPDATE fleet_ingress_ids SET started_at = now() - interval '2 minutes' "
                "WHERE id = 'id-2'"
            )
        finally:
            await connection.close()
        assert await second.begin("/a", "id-2", b"{}", 60) is Seen.NEW
    finally:
        await asyncio.gather(first.close(), second.close())
