"""Coalesced wake-ups: every call is served by a wake-up that started after it."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from workers.outbox.wakeups import SPACING, Wakeups


class Wire:
    """A fake NOTIFY: records when each wake-up started and ended on a shared clock."""

    def __init__(self, seconds: float = 0.002) -> None:
        self.clock = itertools.count()
        self.sends: list[tuple[int, int]] = []
        self.seconds = seconds
        self.fail_next = False

    async def send(self) -> None:
        started = next(self.clock)
        await asyncio.sleep(self.seconds)
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the connection went")
        self.sends.append((started, next(self.clock)))


async def test_a_lone_call_sends_one_wakeup() -> None:
    wakeups, wire = Wakeups(), Wire()
    await wakeups.wake(wire.send)
    await wakeups.wake(wire.send)
    assert len(wire.sends) == 2
    assert (wakeups.sent, wakeups.joined) == (2, 0)


async def test_concurrent_calls_share_wakeups_and_each_is_covered() -> None:
    wakeups, wire = Wakeups(), Wire()
    calls: list[tuple[int, int]] = []

    async def producer() -> None:
        for _ in range(20):
            await asyncio.sleep(random.uniform(0, 0.003))  # a commit
            called = next(wire.clock)
            await wakeups.wake(wire.send)
            calls.append((called, next(wire.clock)))

    await asyncio.gather(*(producer() for _ in range(16)))

    assert len(calls) == 320
    assert len(wire.sends) < len(calls) / 2, "wake-ups were not shared"
    assert wakeups.sent + wakeups.joined <= len(calls)
    for called, returned in calls:
        # Some wake-up began after the call and had ended when the call returned.
        assert any(called < start and end < returned for start, end in wire.sends), (
            called,
            returned,
        )


async def test_a_failed_wakeup_raises_for_its_sender_and_frees_the_next() -> None:
    wakeups, wire = Wakeups(), Wire()
    wire.fail_next = True
    with pytest.raises(ConnectionError):
        await wakeups.wake(wire.send)
    await wakeups.wake(wire.send)
    assert len(wire.sends) == 1


async def test_a_cancelled_sender_does_not_strand_its_waiters() -> None:
    wakeups, wire = Wakeups(), Wire(seconds=0.05)
    first = asyncio.create_task(wakeups.wake(wire.send))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(wakeups.wake(wire.send))  # waits for the first
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.wait_for(second, 1)  # sends its own once the first is gone
    assert len(wire.sends) == 1


class TestInTheBackground:
    async def test_callers_return_at_once_and_a_send_starts_after_each(self) -> None:
        wakeups, wire = Wakeups(), Wire()
        calls: list[int] = []

        async def producer() -> None:
            for _ in range(20):
                await asyncio.sleep(random.uniform(0, 0.003))
                calls.append(next(wire.clock))
                await wakeups.wake(self.refuse)  # the caller's connection is never used

        async with wakeups.sending(wire.send):
            await asyncio.gather(*(producer() for _ in range(16)))
            await asyncio.sleep((wire.seconds + SPACING) * 3)  # the last ask is sent
        assert len(wire.sends) < len(calls) / 2, "wake-ups were not shared"
        for called in calls:
            assert any(called < start for start, _ in wire.sends), called

    async def test_wakeups_start_at_least_spacing_apart_and_the_first_goes_at_once(
        self,
    ) -> None:
        wakeups, wire = Wakeups(), Wire(seconds=0)
        loop = asyncio.get_running_loop()
        starts: list[float] = []
        asked: list[float] = []

        async def send() -> None:
            starts.append(loop.time())
            await wire.send()

        async with wakeups.sending(send, spacing=0.05):
            for _ in range(20):
                asked.append(loop.time())
                await wakeups.wake(self.refuse)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.12)  # the last ask is sent
        assert starts[0] - asked[0] < 0.02, "the first wake-up after a quiet spell waited"
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.049, gaps
        assert len(starts) <= 6, "asks within the spacing were not shared"
        assert all(any(t <= start for start in starts) for t in asked)
        assert starts[-1] >= asked[-1]

    async def test_a_failed_send_is_tried_again(self) -> None:
        wakeups, wire = Wakeups(), Wire()
        wire.fail_next = True
        async with wakeups.sending(wire.send, retry_in=0.01):
            await wakeups.wake(self.refuse)
            for _ in range(100):
                if wire.sends:
                    break
                await asyncio.sleep(0.01)
        assert len(wire.sends) == 1

    async def test_after_the_block_callers_send_their_own_again(self) -> None:
        wakeups, wire = Wakeups(), Wire()
        async with wakeups.sending(wire.send):
            assert wakeups.in_background
        assert not wakeups.in_background
        await wakeups.wake(wire.send)
        assert len(wire.sends) == 1

    @staticmethod
    async def refuse() -> None:
        raise AssertionError("sent on the caller's connection while a background sender runs")
