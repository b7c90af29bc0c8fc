"""The circuit breaker's decisions, on a fake clock: when it opens, when it probes,
and what a probe's outcome does; and which fates count as failures."""

from __future__ import annotations

import pytest

from topology import Duration
from workers.runtime.breaker import circuit_of, failed
from workers.runtime.circuit import Circuit
from workers.runtime.retry import Park, Recount, Redeliver


def tripped(circuit: Circuit, n: int, now: float = 0.0) -> None:
    for _ in range(n):
        circuit.record(True, now)


class TestConsecutiveFailures:
    def test_it_opens_at_the_threshold_and_not_before(self) -> None:
        circuit = Circuit(threshold=3, cool_down=30)
        assert [circuit.record(True, 0.0) for _ in range(2)] == [None, None]
        change = circuit.record(True, 1.0)
        assert change is not None
        assert (change.before, change.after, change.reason) == (
            "closed",
            "open",
            "3 transient failures in a row",
        )
        assert (circuit.state, circuit.opened) == ("open", 1)

    def test_a_success_between_failures_starts_the_count_again(self) -> None:
        circuit = Circuit(threshold=3, cool_down=30)
        tripped(circuit, 2)
        circuit.record(False, 0.0)
        tripped(circuit, 2)
        assert circuit.state == "closed"

    def test_outcomes_while_open_decide_nothing(self) -> None:
        """Deliveries in flight when it opened settle on their own path."""
        circuit = Circuit(threshold=1, cool_down=30)
        circuit.record(True, 0.0)
        assert circuit.record(False, 1.0) is None
        assert circuit.record(True, 1.0) is None
        assert (circuit.state, circuit.opened) == ("open", 1)


class TestCoolDownAndProbe:
    def test_it_is_half_open_once_the_cool_down_is_over(self) -> None:
        circuit = Circuit(threshold=1, cool_down=30)
        circuit.record(True, 100.0)
        assert circuit.reopens_at == 130.0
        assert circuit.due(129.9) is None
        change = circuit.due(130.0)
        assert change is not None
        assert (change.before, change.after) == ("open", "half-open")
        assert circuit.reopens_at is None

    def test_a_successful_probe_closes_it_with_the_count_reset(self) -> None:
        circuit = Circuit(threshold=2, cool_down=5)
        tripped(circuit, 2)
        circuit.due(5.0)
        change = circuit.probed(False, 5.1)
        assert change is not None
        assert (change.after, change.reason) == (
            "closed",
            "the probe succeeded",
        )
        assert circuit.record(True, 6.0) is None  # one failure after closing: not two
        assert circuit.state == "closed"

    def test_a_failed_probe_opens_it_for_another_cool_down(self) -> None:
        circuit = Circuit(threshold=2, cool_down=5)
        tripped(circuit, 2)
        circuit.due(5.0)
        change = circuit.probed(True, 5.5)
        assert change is not None
        assert (change.before, change.after, change.reason) == (
            "half-open",
            "open",
            "the probe failed",
        )
        assert (circuit.opened, circuit.reopens_at) == (2, 10.5)

    def test_only_the_probe_decides_while_half_open(self) -> None:
        circuit = Circuit(threshold=1, cool_down=5)
        circuit.record(True, 0.0)
        circuit.due(5.0)
        assert circuit.record(False, 5.1) is None  # a late in-flight success
        assert circuit.state == "half-open"

    def test_a_probe_outcome_outside_half_open_is_ignored(self) -> None:
        circuit = Circuit(threshold=1, cool_down=5)
        assert circuit.probed(True, 0.0) is None
        assert circuit.state == "closed"


class TestErrorRate:
    def test_it_opens_at_the_share_once_enough_calls_were_seen(self) -> None:
        circuit = Circuit(threshold=None, cool_down=5, error_rate=0.5, window=60, min_calls=4)
        for failure in (True, False, True):
            assert circuit.record(failure, 1.0) is None  # 2 of 3: too few calls
        change = circuit.record(False, 2.0)
        assert change is not None
        assert change.reason == "2 of 4 calls failed in 60s"

    def test_calls_older_than_the_window_drop_out(self) -> None:
        circuit = Circuit(threshold=None, cool_down=5, error_rate=0.5, window=10, min_calls=4)
        for _ in range(3):
            circuit.record(True, 0.0)
        for _ in range(3):
            circuit.record(False, 11.0)  # the failures are 11 s old: out of the window
        assert circuit.record(True, 11.0) is None  # 1 of 4
        assert circuit.state == "closed"

    def test_a_breaker_needs_a_threshold_or_a_rate(self) -> None:
        with pytest.raises(ValueError, match="threshold or an error rate"):
            Circuit(threshold=None, cool_down=5)


class TestWhatCounts:
    @pytest.mark.parametrize(
        ("decision", "verdict"),
        [
            (None, False),
            (Redeliver("q.retry.5s", Duration(5000), 1, "503"), True),
            (Park("retries-exhausted", "HTTPStatusError", "503"), True),
            (Park("permanent", "Reject", "card expired"), None),
            (Park("decode", "InvalidPayload", "$.n"), None),
            (Recount(2), None),
        ],
    )
    def test_transient_failures_count_and_permanent_ones_say_nothing(
        self, decision: object, verdict: bool | None
    ) -> None:
        assert failed(decision) is verdict  # type: ignore[arg-type]

    def test_a_topology_breaker_without_a_threshold_trips_at_five(self) -> None:
        from topology.breaker import CircuitBreaker

        circuit = circuit_of(CircuitBreaker())
        assert (circuit.threshold, circuit.cool_down, circuit.error_rate) == (5, 30.0, None)
        rated = circuit_of(CircuitBreaker(error_rate=0.5))
        assert (rated.threshold, rated.window, rated.min_calls) == (None, 60.0, 10)
