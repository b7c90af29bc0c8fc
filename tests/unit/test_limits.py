"""A worker's rate limits as the topology declares them, on a fake clock."""

from __future__ import annotations

import pytest

from topology import loads
from topology.model import WorkerSpec
from workers.runtime.bucket import TokenBucket
from workers.runtime.limits import Limits, unknown_handlers

BASE = (
    "exchanges: {orders: {}}\n"
    "queues:\n  pay: {bind: [{exchange: orders}]}\n"
    "workers:\n  pay:\n    module: m\n    queue: pay\n"
)


def spec(extra: str = "") -> WorkerSpec:
    return loads(BASE + extra).workers["pay"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestLimits:
    def test_a_worker_without_limits_has_none_so_its_path_asks_nothing(self) -> None:
        assert Limits.of(spec()) is None

    def test_a_worker_rate_or_a_handler_rate_makes_limits(self) -> None:
        assert Limits.of(spec("    rate: 10/s\n")) is not None
        limits = Limits.of(spec("    handler_rates: {Charge: {rate: 1/s}}\n"))
        assert limits is not None
        assert limits.handlers == {"Charge"}

    def test_a_handler_limit_narrows_the_worker_limit_and_others_keep_the_worker_one(
        self,
    ) -> None:
        clock = Clock()
        limits = Limits(TokenBucket(10), {"Charge": TokenBucket(2)}, clock)
        assert [limits.wait("Charge") for _ in range(2)] == pytest.approx([0, 0.5])
        assert limits.wait("Refund") == pytest.approx(0.2)  # two turns taken already

    def test_a_handler_only_limit_leaves_other_handlers_unlimited(self) -> None:
        limits = Limits(None, {"Charge": TokenBucket(1)}, Clock())
        assert [limits.wait("Refund") for _ in range(100)] == [0.0] * 100


class TestUnknownHandlers:
    def test_a_rate_for_a_contract_the_worker_does_not_handle_is_one_line(self) -> None:
        problem = unknown_handlers(
            "pay", spec("    handler_rates: {Chrage: {rate: 1/s}}\n"), ["Charge"]
        )
        assert problem == (
            "workers.pay.handler_rates.Chrage: worker 'pay' has no handler for Chrage "
            "(handles: Charge)"
        )

    def test_rates_for_handled_contracts_are_fine(self) -> None:
        assert (
            unknown_handlers("pay", spec("    handler_rates: {Charge: {rate: 1/s}}\n"), ["Charge"])
            is None
        )
