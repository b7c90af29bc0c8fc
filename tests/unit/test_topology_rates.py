"""Rate limits in the topology file: how they are written, and each mistake as one
line naming its path."""

from __future__ import annotations

import pytest

from tests.unit.test_topology_load import problems_of
from topology import Rate, loads

BASE = (
    "exchanges: {orders: {}}\n"
    "queues:\n  pay: {bind: [{exchange: orders}]}\n"
    "workers:\n  pay:\n    module: m\n    queue: pay\n"
)


class TestRates:
    @pytest.mark.parametrize(
        ("text", "per_second"), [("50/s", 50), ("600/m", 10), ("3600/h", 1), ("2.5/s", 2.5)]
    )
    def test_a_rate_is_a_number_per_unit(self, text: str, per_second: float) -> None:
        assert Rate.parse(text).per_second == per_second

    def test_a_worker_and_its_handlers_declare_rates_and_bursts(self) -> None:
        text = BASE + "    rate: 50/s\n    burst: 5\n    handler_rates: {Charge: {rate: 600/m}}\n"
        spec = loads(text).workers["pay"]
        assert (spec.rate, spec.burst) == (Rate(50), 5)
        assert (
            spec.handler_rates["Charge"].rate.per_second,
            spec.handler_rates["Charge"].burst,
        ) == (
            10,
            1,
        )

    def test_without_a_rate_there_is_no_limit(self) -> None:
        assert loads(BASE).workers["pay"].rate is None


class TestBadRates:
    def test_a_rate_of_zero_is_refused(self) -> None:
        assert problems_of(BASE + "    rate: 0/s\n") == [
            "workers.pay.rate: invalid rate '0/s': a rate must be above zero"
        ]

    def test_a_rate_that_is_no_number_is_refused(self) -> None:
        assert problems_of(BASE + "    rate: fast\n") == [
            "workers.pay.rate: invalid rate 'fast': write a number of calls per unit, "
            "like 50/s, 600/m or 3600/h"
        ]

    def test_a_burst_below_one_is_refused(self) -> None:
        assert problems_of(BASE + "    rate: 50/s\n    burst: 0\n") == [
            "workers.pay.burst: expected 'int' >= 1"
        ]

    def test_a_handler_rate_names_its_handler(self) -> None:
        text = BASE + "    handler_rates: {Charge: {rate: 5/x}}\n"
        assert problems_of(text) == [
            "workers.pay.handler_rates.Charge.rate: invalid rate '5/x': write a number of "
            "calls per unit, like 50/s, 600/m or 3600/h"
        ]

    def test_a_handler_burst_below_one_names_its_handler(self) -> None:
        text = BASE + "    handler_rates: {Charge: {rate: 5/s, burst: -1}}\n"
        assert problems_of(text) == ["workers.pay.handler_rates.Charge.burst: expected 'int' >= 1"]
