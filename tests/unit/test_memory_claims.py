"""The in-memory inbox: ids for `capacity` claims, follow-ons for the last `replays`,
and never a duplicate acked without follow-ons it may not have published."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.runtime.claims import MemoryClaims
from workers.runtime.outgoing import Outgoing


def follow_on(message_id: str) -> Outgoing:
    return Outgoing(
        exchange="x",
        routing_key="k",
        body=b"{}",
        message_id=f"{message_id}-next",
        correlation_id="c",
        causation_id=message_id,
        type="T",
        version=1,
        mandatory=True,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def process(store: MemoryClaims, message_id: str, *, emits: bool) -> bool:
    """Claim and finish one delivery; whether it was new."""
    async with store.claim("w", message_id) as claim:
        if claim.duplicate:
            return False
        if emits:
            claim.keep([follow_on(message_id)])
        return True


async def test_ids_without_follow_ons_are_kept_for_the_capacity() -> None:
    store = MemoryClaims(capacity=100, replays=2)
    for i in range(100):
        assert await process(store, f"m{i}", emits=False)
    assert not await process(store, "m0", emits=False)  # still within the window
    assert await process(store, "m-new", emits=False)
    assert await process(store, "m0", emits=False)  # pushed out by one more id


async def test_a_recent_duplicate_replays_its_follow_ons() -> None:
    store = MemoryClaims(capacity=100, replays=2)
    await process(store, "a", emits=True)
    async with store.claim("w", "a") as claim:
        assert claim.duplicate
        assert [m.message_id for m in claim.replay] == ["a-next"]


async def test_forgetting_follow_ons_forgets_the_id_so_the_handler_runs_again() -> None:
    """A duplicate whose follow-ons are gone is processed again (at least once), never
    acked with nothing republished."""
    store = MemoryClaims(capacity=100, replays=2)
    for message_id in ("a", "b", "c"):
        await process(store, message_id, emits=True)
    assert await process(store, "a", emits=True)  # its follow-ons were forgotten
    async with store.claim("w", "c") as claim:
        assert claim.duplicate
        assert claim.replay


async def test_workers_do_not_share_ids() -> None:
    store = MemoryClaims(capacity=10)
    async with store.claim("one", "m"):
        pass
    async with store.claim("two", "m") as claim:
        assert not claim.duplicate


async def test_memory_stays_bounded_past_the_capacity() -> None:
    store = MemoryClaims(capacity=50, replays=5)
    for i in range(1000):
        await process(store, f"m{i}", emits=i % 2 == 0)
    assert len(store._order["w"]) == 50
    assert len(store._ids["w"]) <= 50
    assert len(store._kept) == 5
