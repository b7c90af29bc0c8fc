"""`fleet saga show`'s causation tree, drawn from timeline rows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.saga import Step, render

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLACED, RESERVED, DEADLINE, CAPTURED = "o-1-placed", "a" * 32, "b" * 32, "c" * 32


def step(
    message_id: str,
    cause: str | None,
    type: str,
    worker: str,
    ms: int,
    outcome: str = "processed",
    emitted: tuple[str, ...] = (),
    detail: str | None = None,
) -> Step:
    return Step(
        message_id,
        cause,
        type,
        worker,
        outcome,
        list(emitted),
        detail,
        T0 + timedelta(milliseconds=ms),
    )


def test_events_hang_under_the_step_that_emitted_them() -> None:
    """Each event once, its handlings under it, what a handling emitted under that."""
    # Given
    steps = [
        step(PLACED, None, "OrderPlaced", "inventory", 0, emitted=("StockReserved",)),
        step(PLACED, None, "OrderPlaced", "orders", 2, emitted=("OrderDeadline",)),
        step(
            RESERVED, PLACED, "StockReserved", "payments", 10, "retried", detail="Unavailable: 503"
        ),
        step(RESERVED, PLACED, "StockReserved", "payments", 130, emitted=("PaymentCaptured",)),
        step(CAPTURED, RESERVED, "PaymentCaptured", "shipping", 150),
        step(DEADLINE, PLACED, "OrderDeadline", "orders", 30_002),
    ]
    # When
    lines = [line for line, _ in render(steps)]
    # Then
    assert lines == [
        "OrderPlaced  o-1-placed",
        "├─ +0ms  inventory  processed → StockReserved",
        "│  └─ StockReserved  aaaaaaaaaaaa…",
        "│     ├─ +10ms  payments  retried (Unavailable: 503)",
        "│     └─ +130ms  payments  processed → PaymentCaptured",
        "│        └─ PaymentCaptured  cccccccccccc…",
        "│           └─ +150ms  shipping  processed",
        "└─ +2ms  orders  processed → OrderDeadline",
        "   └─ OrderDeadline  bbbbbbbbbbbb…",
        "      └─ +30002ms  orders  processed",
    ]


def test_each_line_carries_its_outcome_for_colouring() -> None:
    # Given
    steps = [step(PLACED, None, "OrderPlaced", "inventory", 0, "dead-lettered", detail="decode")]
    # When / Then
    assert render(steps) == [
        ("OrderPlaced  o-1-placed", None),
        ("└─ +0ms  inventory  dead-lettered (decode)", "dead-lettered"),
    ]


def test_an_event_whose_cause_is_not_recorded_is_a_root() -> None:
    """A follow-on whose cause left no row (published by a plain client) starts its own tree;
    one whose cause is recorded but no step says it emitted it hangs under the cause."""
    # Given
    steps = [
        step(PLACED, None, "OrderPlaced", "orders", 0),
        step(RESERVED, "elsewhere", "StockReserved", "payments", 5),
        step(CAPTURED, PLACED, "PaymentCaptured", "shipping", 9),
    ]
    # When
    lines = [line for line, _ in render(steps)]
    # Then
    assert lines == [
        "OrderPlaced  o-1-placed",
        "├─ +0ms  orders  processed",
        "└─ PaymentCaptured  cccccccccccc…",
        "   └─ +9ms  shipping  processed",
        "StockReserved  aaaaaaaaaaaa…",
        "└─ +5ms  payments  processed",
    ]


def test_no_rows_no_lines() -> None:
    assert render([]) == []
