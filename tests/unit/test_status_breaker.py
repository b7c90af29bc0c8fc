"""`fleet status`'s BREAKER column: what a breaker's processes say, and the column
shown only where a worker declares a breaker."""

from __future__ import annotations

import pytest

from workers.cli.status import HEADER, render
from workers.status import BreakerStatus, Depth, QueueStatus, Snapshot


class TestBreakerStatus:
    @pytest.mark.parametrize(
        ("processes", "opened", "shown"),
        [(0, 0, "no process"), (2, 0, "closed"), (1, 1, "open"), (3, 1, "open 1/3")],
    )
    def test_it_says_how_many_processes_stopped_consuming(
        self, processes: int, opened: int, shown: str
    ) -> None:
        assert str(BreakerStatus("payments", processes, opened)) == shown


def row(name: str, breakers: list[BreakerStatus] | None = None) -> QueueStatus:
    return QueueStatus(Depth(name), "work", [], Depth(f"{name}.dead"), breakers or [])


class TestColumn:
    def test_without_a_breaker_the_table_is_unchanged(self) -> None:
        [(header, _), *_] = render(Snapshot([row("payments")]))
        assert header.split() == list(HEADER)

    def test_with_one_each_row_shows_its_breaker_or_a_dash(self) -> None:
        shot = Snapshot([row("payments", [BreakerStatus("payments", 1, 1)]), row("shipping")])
        header, payments, shipping = (line.split() for line, _ in render(shot)[:3])
        assert header[-1] == "BREAKER"
        assert (payments[0], payments[-1]) == ("payments", "open")
        assert (shipping[0], shipping[-1]) == ("shipping", "-")

    def test_several_workers_on_one_queue_are_named(self) -> None:
        breakers = [BreakerStatus("a", 1, 0), BreakerStatus("b", 2, 2)]
        [_, (line, _), *_] = render(Snapshot([row("shared", breakers)]))
        assert line.endswith("a:closed, b:open 2/2")
