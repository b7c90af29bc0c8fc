"""The circuit breaker in the topology file: how it is written, and each mistake as
one line naming its path."""

from __future__ import annotations

import pytest

from tests.unit.test_topology_load import problems_of
from topology import Duration, loads

BASE = (
    "exchanges: {orders: {}}\n"
    "queues:\n  pay: {bind: [{exchange: orders}]}\n"
    "workers:\n  payments:\n    module: m\n    queue: pay\n"
)


class TestBreaker:
    def test_a_worker_declares_failures_and_a_cool_down(self) -> None:
        breaker = (
            loads(BASE + "    breaker: {failures: 5, cool_down: 30s}\n").workers["payments"].breaker
        )
        assert breaker is not None
        assert (breaker.threshold, breaker.cool_down) == (5, Duration(30_000))

    def test_the_error_rate_form(self) -> None:
        text = BASE + "    breaker: {error_rate: 0.5, window: 2m, min_calls: 20, cool_down: 10s}\n"
        breaker = loads(text).workers["payments"].breaker
        assert breaker is not None
        assert (breaker.threshold, breaker.error_rate, breaker.rate_window) == (
            None,
            0.5,
            Duration(120_000),
        )
        assert breaker.rate_min_calls == 20

    def test_an_empty_breaker_takes_the_defaults(self) -> None:
        breaker = loads(BASE + "    breaker: {}\n").workers["payments"].breaker
        assert breaker is not None
        assert (breaker.threshold, breaker.cool_down) == (5, Duration(30_000))

    def test_without_a_breaker_there_is_none(self) -> None:
        assert loads(BASE).workers["payments"].breaker is None


class TestBadBreakers:
    @pytest.mark.parametrize(
        ("written", "problem"),
        [
            ("{failures: 0}", "workers.payments.breaker.failures: expected 'int' >= 1"),
            (
                "{cool_down: 30}",
                "workers.payments.breaker.cool_down: invalid duration 30: write a whole "
                "number and a unit, like 250ms, 5s, 30s, 5m, 1h or 1d",
            ),
            ("{error_rate: 1.5}", "workers.payments.breaker.error_rate: expected 'float' <= 1.0"),
            ("{error_rate: 0}", "workers.payments.breaker.error_rate: expected 'float' > 0.0"),
            (
                "{error_rate: 0.5, min_calls: 0}",
                "workers.payments.breaker.min_calls: expected 'int' >= 1",
            ),
            (
                "{failure: 5}",
                "workers.payments.breaker: object contains unknown field 'failure' "
                "(valid: failures, cool_down, error_rate, window, min_calls)",
            ),
            ("5", "workers.payments.breaker: expected 'object | null', got 'int'"),
        ],
    )
    def test_a_bad_value_is_one_line_naming_its_path(self, written: str, problem: str) -> None:
        assert problems_of(BASE + f"    breaker: {written}\n") == [problem]

    @pytest.mark.parametrize("setting", ["window: 1m", "min_calls: 20"])
    def test_a_window_or_min_calls_without_an_error_rate_is_a_contradiction(
        self, setting: str
    ) -> None:
        name = setting.split(":")[0]
        assert problems_of(BASE + f"    breaker: {{failures: 5, {setting}}}\n") == [
            f"workers.payments.breaker.{name}: {name} belongs to the error-rate form: add "
            "error_rate (a share such as 0.5), or remove it"
        ]
