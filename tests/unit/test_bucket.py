"""The token bucket, on a fake clock: the times it hands out keep to its rate."""

from __future__ import annotations

import pytest

from workers.runtime.bucket import TokenBucket


class TestTokenBucket:
    def test_a_full_bucket_lets_burst_calls_go_at_once_then_spaces_them(self) -> None:
        bucket = TokenBucket(50, burst=3)
        waits = [bucket.take(0.0) for _ in range(5)]
        assert waits == pytest.approx([0, 0, 0, 0.02, 0.04])

    def test_callers_arriving_together_are_queued_one_interval_apart(self) -> None:
        bucket = TokenBucket(10, burst=1)
        assert [bucket.take(1.0) for _ in range(4)] == pytest.approx([0, 0.1, 0.2, 0.3])

    def test_waits_follow_the_schedule_not_the_wake_up_time(self) -> None:
        # A sleeper woken late (0.12 s instead of 0.1) does not push the next token back.
        bucket = TokenBucket(10, burst=1)
        bucket.take(0.0)
        assert bucket.take(0.0) == pytest.approx(0.1)
        assert bucket.take(0.12) == pytest.approx(0.08)

    def test_idle_time_saves_up_no_more_than_the_burst(self) -> None:
        bucket = TokenBucket(100, burst=2)
        bucket.take(0.0)
        bucket.take(0.0)
        waits = [bucket.take(60.0) for _ in range(3)]
        assert waits == pytest.approx([0, 0, 0.01])

    def test_a_long_run_keeps_to_the_rate(self) -> None:
        bucket, now = TokenBucket(50, burst=1), 0.0
        for _ in range(1000):
            now += bucket.take(now)
        assert now == pytest.approx(999 / 50)

    @pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (10, 0)])
    def test_a_rate_of_nothing_or_a_burst_below_one_is_refused(
        self, rate: float, burst: int
    ) -> None:
        with pytest.raises(ValueError, match="must be"):
            TokenBucket(rate, burst)
