"""One owner of a channel's acks: frames go out in the batcher's order, a batch that
never fills is acked by the timer, and a requeued delivery is never named in an ack.

The channel here records the frames it is asked to send: this checks the order
of what fleet sends, not RabbitMQ (the integration tests do that)."""

from __future__ import annotations

import asyncio
from typing import Any

from workers.runtime.acking import ACK_DELAY, Acknowledger
from workers.runtime.reconnect import Backoff


class RecordingChannel:
    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []

    async def basic_ack(self, tag: int, *, multiple: bool, wait: bool) -> None:
        self.frames.append(("ack", tag, multiple))

    async def basic_nack(self, tag: int, *, multiple: bool, requeue: bool, wait: bool) -> None:
        self.frames.append(("nack", tag, multiple))


def acknowledger(batch: int = 2) -> tuple[Acknowledger, RecordingChannel]:
    channel = RecordingChannel()
    acks = Acknowledger(channel, batch=batch, scatter_after=8)  # type: ignore[arg-type]
    return acks, channel


class TestAcknowledger:
    async def test_a_full_batch_goes_out_as_one_multiple_ack(self) -> None:
        acks, channel = acknowledger(batch=2)
        for _ in range(2):
            acks.received()
        await acks.finished(1)
        await acks.finished(2)
        assert channel.frames == [("ack", 2, True)]
        assert acks.in_flight == 0

    async def test_a_batch_that_never_fills_is_acked_by_the_timer(self) -> None:
        acks, channel = acknowledger(batch=10)
        acks.received()
        await acks.finished(1)
        assert channel.frames == []
        await asyncio.sleep(ACK_DELAY * 5)
        assert channel.frames == [("ack", 1, True)]

    async def test_a_requeued_delivery_is_nacked_and_the_next_ack_names_an_outstanding_tag(
        self,
    ) -> None:
        """The multiple ack after a nack names tag 3, outstanding; RabbitMQ skips the
        settled tag 1 under it."""
        acks, channel = acknowledger(batch=3)
        for _ in range(3):
            acks.received()
        await acks.requeue(1)
        await acks.finished(2)
        await acks.finished(3)
        await acks.flush()
        assert channel.frames == [("nack", 1, False), ("ack", 3, True)]
        assert acks.in_flight == 0

    async def test_flush_sends_what_is_due_and_stops_the_timer(self) -> None:
        acks, channel = acknowledger(batch=10)
        acks.received()
        await acks.finished(1)
        await acks.flush()
        await asyncio.sleep(ACK_DELAY * 5)
        assert channel.frames == [("ack", 1, True)]


class TestBackoff:
    def test_delays_grow_exponentially_with_full_jitter_up_to_the_cap(self) -> None:
        backoff = Backoff(base=0.5, cap=4.0, floor=0.1)
        for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
            delays: list[Any] = [backoff.delay(failures) for _ in range(200)]
            assert all(0.1 <= d <= ceiling for d in delays), (failures, max(delays))
            assert max(delays) > ceiling * 0.8  # jitter spans the range
