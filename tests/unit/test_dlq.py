"""What `fleet dlq show` says of a message the broker parked, on RabbitMQ 3.x and 4.x."""

from __future__ import annotations

from typing import Any

from topology.management import PeekedMessage
from workers.dlq import RESET_HEADERS, ParkedMessage, broker_reason

#: A message fleet retried through `ledger.retry.5s`, then crash-looped past the
#: delivery limit of `ledger`: the broker's headers as each version writes them.
DEATHS = [
    {"queue": "ledger", "reason": "delivery_limit", "count": 1, "exchange": ""},
    {"queue": "ledger.retry.5s", "reason": "expired", "count": 1, "exchange": "ledger.failures"},
]
ON_3_10: dict[str, Any] = {
    "x-death": DEATHS,
    "x-first-death-exchange": "ledger.failures",
    "x-first-death-queue": "ledger.retry.5s",
    "x-first-death-reason": "expired",
}
ON_4_0: dict[str, Any] = {
    **ON_3_10,
    "x-last-death-exchange": "",
    "x-last-death-queue": "ledger",
    "x-last-death-reason": "delivery_limit",
}


class TestBrokerReason:
    def test_on_4_x_it_is_the_last_death(self) -> None:
        """RabbitMQ 4 names the latest death in x-last-death-reason."""
        assert broker_reason(ON_4_0) == "delivery_limit"

    def test_on_3_x_it_is_the_first_entry_of_x_death(self) -> None:
        """3.x has no x-last-death-* headers, but lists the most recent death first."""
        assert broker_reason(ON_3_10) == "delivery_limit"

    def test_without_x_death_the_first_death_is_all_there_is(self) -> None:
        """A message whose x-death was stripped still says what the first-death header says."""
        assert broker_reason({"x-first-death-reason": "rejected"}) == "rejected"

    def test_without_any_death_header_it_is_unknown(self) -> None:
        """Not even the broker said why: `unknown`, not an error."""
        assert broker_reason({"x-death": "not a list"}) == "unknown"

    def test_a_parked_message_without_fleets_reason_shows_the_brokers(self) -> None:
        """`dlq show` marks the broker's reason as the broker's."""
        # Given
        peeked = PeekedMessage(payload=b"{}", properties={"headers": ON_4_0})
        # When
        parked = ParkedMessage.from_peek(peeked)
        # Then
        assert parked.reason == "delivery_limit (by the broker)"


class TestReplayResets:
    def test_every_death_header_of_either_version_is_removed(self) -> None:
        """A replayed message starts over: no history of 3.x's or 4.x's dead-lettering."""
        assert set(ON_4_0) <= set(RESET_HEADERS)
