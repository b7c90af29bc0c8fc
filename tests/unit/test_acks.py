"""AckBatcher: batched multiple acks that never cover an unfinished delivery."""

from __future__ import annotations

from workers.runtime.acks import AckBatcher


def start(batcher: AckBatcher, count: int) -> None:
    for _ in range(count):
        batcher.received()


class TestAckBatcher:
    def test_a_run_shorter_than_a_batch_waits_for_the_flush(self) -> None:
        """Below the batch size nothing is sent until the caller flushes (shortly after)."""
        batcher = AckBatcher(batch=64, scatter_after=64)
        start(batcher, 1)
        assert batcher.finished(1) == []
        assert batcher.due
        assert batcher.flush() == [(1, True)]
        assert not batcher.due

    def test_a_contiguous_run_is_acked_with_one_multiple_ack(self) -> None:
        """Finished deliveries are gathered until the batch is full."""
        batcher = AckBatcher(batch=3, scatter_after=10)
        start(batcher, 5)
        assert batcher.finished(1) == []
        assert batcher.finished(2) == []
        assert batcher.finished(3) == [(3, True)]

    def test_an_unfinished_delivery_holds_back_the_multiple_ack(self) -> None:
        """Tag 1 still running: finishing 2..4 sends nothing that would cover it."""
        batcher = AckBatcher(batch=2, scatter_after=10)
        start(batcher, 5)
        for tag in (2, 3, 4):
            assert batcher.finished(tag) == []
        assert batcher.finished(1) == [(4, True)]

    def test_many_finished_behind_a_slow_one_are_acked_individually(self) -> None:
        """Past scatter_after, deliveries behind a slow head free their prefetch slots."""
        batcher = AckBatcher(batch=64, scatter_after=3)
        start(batcher, 6)
        assert batcher.finished(2) == []
        assert batcher.finished(3) == []
        assert batcher.finished(4) == [(2, False), (3, False), (4, False)]
        assert batcher.finished(5) == []
        # The head finishes: the multiple ack names 6 (still outstanding), never 4.
        assert batcher.finished(1) == []
        assert batcher.finished(6) == []
        assert batcher.flush() == [(6, True)]

    def test_a_multiple_ack_never_names_a_tag_settled_individually(self) -> None:
        """When the top of the run was acked on its own, the ack names the tag below it."""
        batcher = AckBatcher(batch=64, scatter_after=1)
        start(batcher, 3)
        assert batcher.finished(3) == [(3, False)]
        assert batcher.finished(2) == [(2, False)]
        assert batcher.finished(1) == []
        assert batcher.flush() == [(1, True)]

    def test_a_nacked_delivery_is_never_named_in_an_ack(self) -> None:
        """A delivery settled elsewhere (nack) lets the run advance past it silently."""
        batcher = AckBatcher(batch=64, scatter_after=64)
        start(batcher, 3)
        assert batcher.finished(1) == []
        assert batcher.settled(2) == []
        assert batcher.finished(3) == []
        assert batcher.flush() == [(3, True)]

    def test_an_abandoned_delivery_is_never_acked(self) -> None:
        """At shutdown an unstarted delivery is left for the broker to requeue."""
        batcher = AckBatcher(batch=64, scatter_after=64)
        start(batcher, 3)
        batcher.abandoned()  # tag 1
        assert batcher.finished(2) == []
        assert batcher.finished(3) == []
        assert batcher.flush() == []
        assert batcher.in_flight == 0
