"""What an attempt's answer means for the message, and the SSRF guard at delivery time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from topology import Duration, RetryPolicy
from workers.runtime.retry import Park, Redeliver, RetryRules
from workers.webhooks.destination import check_destination
from workers.webhooks.errors import DestinationRefused
from workers.webhooks.outcome import decide, retry_after
from workers.webhooks.sender import Attempt

RULES = RetryRules(
    "webhook.crm",
    RetryPolicy(attempts=1, delays=[Duration(200), Duration(500), Duration(5000)]),
    (DestinationRefused,),
)
NOW = datetime(2026, 1, 12, 12, 0, 0, tzinfo=UTC)


def answered(status: int, retry_after: str | None = None) -> Attempt:
    return Attempt(status, None, 12.5, retry_after)


class TestDecisions:
    @pytest.mark.parametrize("status", [200, 201, 202, 204])
    def test_a_2xx_is_delivered(self, status: int) -> None:
        assert decide(answered(status), RULES, 0) is None

    @pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
    def test_transient_answers_go_to_the_next_tier(self, status: int) -> None:
        # When
        decision = decide(answered(status), RULES, retries_done=1)
        # Then
        assert isinstance(decision, Redeliver)
        assert (decision.queue, decision.tier) == ("webhook.crm.retry.500ms", 2)
        assert f"receiver answered {status}" in decision.reason

    def test_no_answer_is_transient(self) -> None:
        decision = decide(Attempt(None, "timeout after 2s", 2000.0), RULES, 0)
        assert isinstance(decision, Redeliver)
        assert decision.reason == "DeliveryFailed: timeout after 2s"

    @pytest.mark.parametrize("status", [400, 401, 404, 410, 422, 301])
    def test_other_answers_are_dead_lettered_at_once(self, status: int) -> None:
        # When
        decision = decide(answered(status), RULES, retries_done=0)
        # Then
        assert isinstance(decision, Park)
        assert decision.reason == "permanent"
        assert f"receiver answered {status}" in decision.message

    def test_after_the_last_tier_the_message_is_dead_lettered(self) -> None:
        decision = decide(answered(503), RULES, retries_done=3)
        assert isinstance(decision, Park)
        assert decision.reason == "retries-exhausted"
        assert "receiver answered 503" in decision.message

    def test_retry_after_picks_the_first_tier_at_least_that_long(self) -> None:
        """Retry-After: 1 skips the 200ms and 500ms tiers for the 5s one."""
        decision = decide(answered(429, "1"), RULES, retries_done=0, now=NOW)
        assert isinstance(decision, Redeliver)
        assert decision.queue == "webhook.crm.retry.5s"

    def test_retry_after_longer_than_every_tier_picks_the_longest(self) -> None:
        decision = decide(answered(503, "3600"), RULES, retries_done=0, now=NOW)
        assert isinstance(decision, Redeliver)
        assert decision.queue == "webhook.crm.retry.5s"

    def test_a_short_retry_after_keeps_the_next_tier(self) -> None:
        decision = decide(answered(429, "0"), RULES, retries_done=1, now=NOW)
        assert isinstance(decision, Redeliver)
        assert decision.queue == "webhook.crm.retry.500ms"


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert retry_after("120", now=NOW) == timedelta(seconds=120)
        # A Retry-After of any size is a wait, never a timedelta overflow
        assert retry_after("9" * 30, now=NOW) == timedelta(days=365)

    def test_an_http_date(self) -> None:
        assert retry_after("Mon, 12 Jan 2026 12:00:30 GMT", now=NOW) == timedelta(seconds=30)

    @pytest.mark.parametrize("value", [None, "", "soon", "Mon, 12 Jan 2026 11:00:00 GMT", "0"])
    def test_absent_unreadable_or_past_is_none(self, value: str | None) -> None:
        assert retry_after(value, now=NOW) is None


class TestDestinationGuard:
    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/h",
            "http://localhost:8080/h",
            "http://10.0.0.8/h",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/h",
        ],
    )
    async def test_internal_destinations_are_refused(self, url: str) -> None:
        with pytest.raises(DestinationRefused, match="SSRF guard"):
            await check_destination(url)

    async def test_allow_hosts_lets_one_host_through(self) -> None:
        """An IP literal is connected to as written: nothing to pin."""
        address = await check_destination("http://127.0.0.1:8080/h", allow_hosts=("127.0.0.1",))
        assert address is None

    async def test_a_resolved_name_returns_the_checked_address_to_connect_to(self) -> None:
        """localhost allowed by network: the request is pinned to what was checked."""
        address = await check_destination(
            "http://localhost:8080/h", allow_hosts=("127.0.0.0/8", "::1")
        )
        assert address in ("127.0.0.1", "::1")

    async def test_a_name_allowed_by_name_is_not_resolved(self) -> None:
        address = await check_destination("http://localhost/h", allow_hosts=("localhost",))
        assert address is None

    async def test_allow_hosts_by_network(self) -> None:
        await check_destination("http://10.0.0.8/h", allow_hosts=("10.0.0.0/8",))

    async def test_allowing_another_host_does_not_help(self) -> None:
        with pytest.raises(DestinationRefused):
            await check_destination("http://10.0.0.8/h", allow_hosts=("10.0.0.9",))

    async def test_allow_private_lets_every_internal_address_through(self) -> None:
        await check_destination("http://localhost/h", allow_private=True)

    async def test_a_public_address_passes(self) -> None:
        await check_destination("https://93.184.216.34/h")
