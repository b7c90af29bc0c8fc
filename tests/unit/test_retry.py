"""Retry decisions: in-process attempts, delay tiers, permanent errors, crash loops."""

from __future__ import annotations

from datetime import timedelta

import pytest

from topology import Duration, RetryPolicy
from workers.errors import Reject, Retry
from workers.runtime.retry import (
    HandlerFailed,
    Park,
    Recount,
    Redeliver,
    RetryRules,
    crash_guard,
    tier_for,
)

POLICY = RetryPolicy(
    attempts=3,
    backoff=Duration(1),
    max_backoff=Duration(2),
    delays=[Duration(5000), Duration(30_000)],
)
TIERS = RetryPolicy(delays=[Duration(200), Duration(1000), Duration(2000)])


class Flaky:
    def __init__(self, failures: int, error: Exception | None = None):
        self.failures = failures
        self.calls = 0
        self.error = error or ConnectionError("down")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


class TestInProcessAttempts:
    async def test_a_transient_failure_is_retried_in_process(self) -> None:
        """Two failures then success, within three attempts."""
        call = Flaky(2)
        assert await RetryRules("q", POLICY).call(call) == "done"
        assert call.calls == 3

    async def test_attempts_are_bounded(self) -> None:
        """After three failed attempts the last error is reported with the count."""
        call = Flaky(5)
        with pytest.raises(HandlerFailed) as failed:
            await RetryRules("q", POLICY).call(call)
        assert failed.value.attempts == 3
        assert isinstance(failed.value.error, ConnectionError)

    @pytest.mark.parametrize(
        "error", [Reject("no"), Retry("later"), Retry("429", after=2), KeyError("configured")]
    )
    async def test_permanent_errors_and_retry_requests_skip_in_process_attempts(
        self, error: Exception
    ) -> None:
        """Reject, a configured class and Retry are not retried in process."""
        call = Flaky(5, error)
        with pytest.raises(HandlerFailed) as failed:
            await RetryRules("q", POLICY, (KeyError,)).call(call)
        assert call.calls == 1
        assert failed.value.attempts == 1

    async def test_a_retry_after_on_a_later_attempt_ends_the_attempts(self) -> None:
        """A 503, then a 429 with Retry-After: the second call is the last in process."""

        class Told(Flaky):
            async def __call__(self) -> str:
                self.calls += 1
                if self.calls == 1:
                    raise ConnectionError("503")
                raise Retry("429", after=2)

        call = Told(0)
        with pytest.raises(HandlerFailed) as failed:
            await RetryRules("q", POLICY).call(call)
        assert (call.calls, failed.value.attempts) == (2, 2)
        assert isinstance(failed.value.error, Retry)


class TestDecisions:
    def test_the_first_tier_follows_in_process_attempts(self) -> None:
        decision = RetryRules("q", POLICY).decide(ConnectionError("down"), retries_done=0)
        assert decision == Redeliver("q.retry.5s", Duration(5000), 1, "ConnectionError: down")

    def test_the_tiers_are_used_in_order_then_the_message_is_parked(self) -> None:
        rules = RetryRules("q", POLICY)
        assert isinstance(rules.decide(ValueError(), 1), Redeliver)
        parked = rules.decide(ValueError("bad"), 2)
        assert parked == Park("retries-exhausted", "ValueError", "ValueError: bad")

    def test_a_reject_is_parked_with_its_reason(self) -> None:
        parked = RetryRules("q", POLICY).decide(Reject("card expired"), 0)
        assert parked == Park("permanent", "Reject", "card expired")

    def test_a_retry_with_a_delay_picks_the_first_tier_that_long(self) -> None:
        decision = RetryRules("q", POLICY).decide(Retry(delay=timedelta(seconds=10)), 0)
        assert isinstance(decision, Redeliver)
        assert decision.queue == "q.retry.30s"
        assert decision.tier == 2

    def test_a_retry_after_goes_to_the_shortest_tier_that_covers_it(self) -> None:
        rules = RetryRules("q", TIERS)
        decision = rules.decide(Retry("429 Too Many Requests", after=1.5), 0)
        assert decision == Redeliver(
            "q.retry.2s", Duration(2000), 3, "Retry: 429 Too Many Requests (retry after 1.5s)", 1
        )

    def test_a_retry_after_counts_one_retry_whatever_tier_it_takes(self) -> None:
        decision = RetryRules("q", TIERS).decide(Retry(after=timedelta(milliseconds=100)), 1)
        assert isinstance(decision, Redeliver)
        assert (decision.queue, decision.retries) == ("q.retry.200ms", 2)

    def test_a_retry_after_once_every_tier_is_used_is_parked_saying_so(self) -> None:
        parked = RetryRules("q", TIERS).decide(Retry("quota", after=1.5), 3)
        assert parked == Park(
            "retries-exhausted",
            "Retry",
            "quota: asked to retry after 1.5s, but all 3 retry tiers were used",
        )

    @pytest.mark.parametrize(
        ("after", "seconds"),
        [(-3, 0), (float("nan"), 0), (float("inf"), 365 * 86_400), (1e300, 365 * 86_400)],
    )
    def test_whatever_wait_a_downstream_says_is_a_wait(self, after: float, seconds: float) -> None:
        assert Retry(after=after).after == timedelta(seconds=seconds)

    def test_retry_takes_delay_or_after_not_both(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            Retry(delay=timedelta(seconds=1), after=1.0)

    def test_long_error_messages_are_truncated(self) -> None:
        parked = RetryRules("q", POLICY).decide(Reject("x" * 2000), 0)
        assert isinstance(parked, Park)
        assert len(parked.message) == 500


class TestTierFor:
    DELAYS = [Duration(200), Duration(1000), Duration(2000)]

    def test_the_shortest_delay_not_shorter_than_asked(self) -> None:
        assert [tier_for(self.DELAYS, s) for s in (0, 0.2, 0.3, 1.0, 1.5, 2.0)] == [
            0,
            0,
            1,
            1,
            2,
            2,
        ]

    def test_longer_than_every_tier_takes_the_longest(self) -> None:
        assert tier_for(self.DELAYS, 60) == 2

    def test_the_order_tiers_are_listed_in_does_not_matter(self) -> None:
        shuffled = [Duration(2000), Duration(200), Duration(1000)]
        assert (tier_for(shuffled, 0.5), tier_for(shuffled, 9)) == (2, 0)


class TestCrashGuard:
    def test_below_the_limit_a_counted_start_runs(self) -> None:
        assert crash_guard(2, 3) is None

    def test_at_the_limit_the_message_is_parked_as_a_crash_loop(self) -> None:
        parked = crash_guard(3, 3)
        assert isinstance(parked, Park)
        assert parked.reason == "crash-loop"

    def test_without_a_database_the_count_is_carried_forward_in_the_message(self) -> None:
        assert crash_guard(1, 3, recount=True) == Recount(1)
