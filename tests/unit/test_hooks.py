"""The message path's observers: each hook reaches the observers that override it, in
order, and a hook nobody overrides costs nothing."""

from __future__ import annotations

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from topology import Duration
from workers.runtime.delivery import Delivery, read_delivery
from workers.runtime.hooks import DeliveryObserver, Observers
from workers.runtime.observers import Counters, Counting
from workers.runtime.retry import Park, Recount, Redeliver


def delivery() -> Delivery:
    header = ContentHeader(0, 2, Basic.Properties(message_id="m-1", message_type="E"))
    message = DeliveredMessage(
        delivery=Basic.Deliver("c", 1, False, "x", "e.x"),
        header=header,
        body=b"{}",
        channel=None,  # type: ignore[arg-type]
    )
    return read_delivery(message)


class Recording(DeliveryObserver):
    def __init__(self, name: str, seen: list[str]):
        self.name = name
        self.seen = seen

    def on_received(self, delivery: Delivery, label: str | None) -> None:
        self.seen.append(f"{self.name} received {label}")

    def on_parked(
        self, delivery: Delivery, label: str | None, decision: Park, attempts: int
    ) -> None:
        self.seen.append(f"{self.name} parked {decision.reason} after {attempts}")

    async def on_failure_settled(self, delivery: Delivery, decision: Redeliver | Park) -> None:
        self.seen.append(f"{self.name} recorded {type(decision).__name__}")


class TestObservers:
    def test_each_hook_reaches_the_observers_that_override_it_in_order(self) -> None:
        # Given
        seen: list[str] = []
        observers = Observers([Recording("a", seen), DeliveryObserver(), Recording("b", seen)])
        # When
        observers.received(delivery(), "E")
        observers.processed(delivery(), "E")  # nobody overrides it
        # Then
        assert seen == ["a received E", "b received E"]

    def test_only_overriding_observers_are_called_at_all(self) -> None:
        """The base's no-ops are skipped when the composite is built."""
        observers = Observers([DeliveryObserver(), Recording("a", [])])
        assert len(observers._received) == 1
        assert observers._processed == ()

    async def test_a_settled_failure_calls_its_kinds_hook_then_the_async_ones(self) -> None:
        # Given
        seen: list[str] = []
        observers = Observers([Recording("a", seen)])
        park = Park("decode", "InvalidPayload", "bad")
        # When
        await observers.settled(delivery(), "E", park, 3)
        # Then
        assert seen == ["a parked decode after 3", "a recorded Park"]

    async def test_a_recount_is_not_a_failure_the_timeline_records(self) -> None:
        seen: list[str] = []
        await Observers([Recording("a", seen)]).settled(delivery(), "E", Recount(2), 0)
        assert seen == []


class TestCounting:
    async def test_the_counters_follow_every_outcome(self) -> None:
        # Given
        counters = Counters()
        observers = Observers([Counting(counters)])
        one = delivery()
        retry = Redeliver("q.retry.1s", Duration(1000), 1, "boom")
        # When
        observers.processed(one, "E")
        observers.duplicate(one, "E")
        await observers.settled(one, "E", retry, 1)
        await observers.settled(one, "E", Park("permanent", "Reject", "no"), 1)
        await observers.settled(one, "E", Park("permanent", "Reject", "no"), 1)
        await observers.settled(one, "E", Recount(1), 0)
        observers.requeued(one)
        # Then
        assert counters == Counters(
            processed=1,
            duplicates=1,
            retried=1,
            parked=2,
            requeued=1,
            recounted=1,
            by_reason={"permanent": 2},
        )
